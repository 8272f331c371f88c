"""What FastAPI cannot infer for the OpenAPI document: the bodies the routes read themselves, every status
they answer (RFC 9457 problem details, service/core/problems.py), and the Problem schema."""
from __future__ import annotations

from fastapi import FastAPI

from service.core.problems import PROBLEM

LIC_MEDIA_TYPE = "application/vnd.lic"
IMAGE_INPUT_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp", "image/tiff", "application/octet-stream")
LIC_INPUT_TYPES = (LIC_MEDIA_TYPE, "application/octet-stream", "application/x-lic")
IMAGE_OUTPUT_TYPES = ("image/png", "image/webp", "image/jpeg", "image/avif")
BINARY = {"type": "string", "format": "binary"}

PROBLEM_SCHEMA = {
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "type": "object",
    "required": ["type", "title", "status", "detail", "instance"],
    "properties": {
        "type": {"type": "string", "description": "always about:blank: the status and title say what happened"},
        "title": {"type": "string", "description": "the status's reason phrase, or the kind of error"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "what was wrong with this request"},
        "instance": {"type": "string", "description": "the request's path"},
    },
}

WHY = {
    400: "bad query parameters, an unknown model, an empty body or a multipart body without a field 'file'",
    401: "API key missing (only when the service is configured with LIC_API_KEYS)",
    403: "API key not accepted",
    406: "the Accept header allows none of image/png, image/webp, image/avif, image/jpeg",
    408: "the request body stalled (LIC_BODY_TIMEOUT_S) or did not arrive within LIC_REQUEST_TIMEOUT_S",
    413: "body, pixels, tiles, work or decode memory over a limit, checked before decoding",
    415: "wrong Content-Type",
    422: "an undecodable image, or a corrupted, truncated, forged or foreign bitstream",
    503: "busy (queue full), deadline passed, or a worker died: retry after Retry-After",
}
HEADERS = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}},
    503: {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
}


def problems(*statuses: int) -> dict:
    """``responses`` entries for these statuses, each an application/problem+json Problem."""
    return {
        status: {"description": WHY[status], "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                 **({"headers": HEADERS[status]} if status in HEADERS else {})}
        for status in statuses
    }


def _header(description: str, kind: str = "string") -> dict:
    return {"schema": {"type": kind}, "description": description}


COMPRESS = {
    "responses": {
        200: {"description": "the .lic bitstream", "content": {LIC_MEDIA_TYPE: {"schema": BINARY}}, "headers": {
            "X-LIC-Model": _header("model id"), "X-LIC-Quality": _header("quality coded", "number"),
            "X-LIC-BPP": _header("bits per pixel", "number"),
            "X-LIC-PSNR": _header("PSNR in dB (rate-controlled requests)", "number"),
            "X-LIC-Width": _header("pixels", "integer"), "X-LIC-Height": _header("pixels", "integer"),
            "X-LIC-Tiles": _header("tiles coded", "integer"),
            "X-LIC-Transforms": _header("what the analysis ran in: fp32, or int8 (LIC_TRANSFORMS=int8 or int8-encoder, where the model ships int8 twins)"),
            "Server-Timing": _header("total;dur=<ms>"),
            "Content-Disposition": _header("attachment; filename=image.lic")}},
        **problems(400, 401, 403, 408, 413, 415, 422, 503),
    },
    "openapi_extra": {"requestBody": {
        "required": True, "description": "the image, as the raw body or as multipart field 'file'",
        "content": {
            **{media: {"schema": BINARY} for media in IMAGE_INPUT_TYPES},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": BINARY}}},
        },
    }},
}

COMPARE = {
    "responses": {**problems(400, 401, 403, 408, 413, 415, 422, 503)},
    "openapi_extra": COMPRESS["openapi_extra"],
}

DECOMPRESS = {
    "responses": {
        200: {"description": "the image", "content": {media: {"schema": BINARY} for media in IMAGE_OUTPUT_TYPES}, "headers": {
            "X-LIC-Model": _header("model id"), "X-LIC-Width": _header("pixels", "integer"),
            "X-LIC-Height": _header("pixels", "integer"), "X-LIC-Tiles-Decoded": _header("tiles decoded", "integer"),
            "X-LIC-Transforms": _header("what the synthesis ran in: fp32, or int8 (LIC_TRANSFORMS=int8, where the model ships int8 twins)"),
            "Vary": _header("Accept: the format follows it when no format is given"),
            "ETag": _header("strong: the bitstream's hash, the model's fingerprint, what the synthesis runs in and the output parameters"),
            "Cache-Control": _header("LIC_CACHE_CONTROL (immutable by default)"),
            "Content-Disposition": _header("inline; filename=image.<ext>")}},
        304: {"description": "If-None-Match named this output's ETag: not decoded again", "headers": {
            "ETag": _header("the output's ETag"), "Cache-Control": _header("as for 200")}},
        **problems(400, 401, 403, 406, 408, 413, 415, 422, 503),
    },
    "openapi_extra": {"requestBody": {"required": True, "description": "the .lic bitstream",
                                      "content": {media: {"schema": BINARY} for media in LIC_INPUT_TYPES}}},
}


def install(app: FastAPI) -> None:
    """Add the Problem schema the responses refer to."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            generate().setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        return app.openapi_schema

    app.openapi = openapi
