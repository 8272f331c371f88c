"""POST /compress, POST /decompress, POST /compare, GET /models, /healthz, /readyz, /metrics."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.requests import Request as StarletteRequest

from service.api.openapi import COMPARE, COMPRESS, DECOMPRESS, LIC_MEDIA_TYPE
from service.bench.same_size import CODECS, same_size
from service.codec import bitstream, image_io
from service.codec.bitstream import MAX_DIMENSION
from service.codec.codec import check_model
from service.codec.errors import LimitError, ModelError, Stopped
from service.codec.limits import (
    AUTO_REFINE,
    DEFAULT_QUALITY,
    MAX_FRAME,
    MAX_REFINE,
    QUALITY_MAX,
    QUALITY_MIN,
    TILE_MAX,
    TILE_MIN,
    TILE_MULTIPLE,
)
from service.codec.rate_control import AUTO_REFINE_STEPS, AUTO_REFINE_WORK, auto_refine_steps, target_kind
from service.codec.tiles import TileGrid
from service.codec.windows import RegionPlan, assemble, plan_region, region_alpha
from service.core.problems import Problem
from service.engine.batcher import QueueFull
from service.engine.pool import WorkerLost

router = APIRouter()
# The formats /decompress answers, in the order it prefers them among equally acceptable ones.
PREFERENCE = ("PNG", "WEBP", "AVIF", "JPEG")
STREAM_CHUNK = 256 << 10


def _state(request: Request):
    return request.app.state


bearer = HTTPBearer(auto_error=False, description="an API key from LIC_API_KEYS; needed only when the service has keys")


async def require_api_key(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
    keys = _state(request).settings.api_keys
    if not keys:
        return
    if credentials is None:
        raise Problem(401, "Unauthorized", "missing Bearer API key", {"WWW-Authenticate": "Bearer"})
    if not any(hmac.compare_digest(credentials.credentials, key) for key in keys):
        raise Problem(403, "Forbidden", "API key not accepted")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes, and with 408 when a chunk
    takes more than ``body_timeout_s`` to come or the whole body more than ``request_timeout_s``."""
    settings = _state(request).settings
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise Problem(413, "Content Too Large", f"body of {length} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    stream, deadline = request.stream().__aiter__(), time.monotonic() + settings.request_timeout_s
    while True:
        wait = min(settings.body_timeout_s, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(wait, 0))
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise Problem(408, "Request Timeout", f"the request body stalled (no data for {settings.body_timeout_s:g} s, "
                          f"or not all of it within {settings.request_timeout_s:g} s)", {"Connection": "close"}) from None
        size += len(chunk)
        if size > limit:
            raise Problem(413, "Content Too Large", f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise Problem(400, "Bad Request", "empty request body")
    return body


async def image_from_request(request: Request, limit: int) -> bytes:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (media.startswith("image/") or media in ("application/octet-stream", "multipart/form-data")):
        raise Problem(415, "Unsupported Media Type", f"send an image (image/png, image/jpeg, ...) or multipart field 'file', not {media or 'nothing'}")
    body = await read_body(request, limit)
    if media != "multipart/form-data":
        return body

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    form = await StarletteRequest(request.scope, replay).form(max_files=1, max_fields=8)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise Problem(400, "Bad Request", "multipart body needs a file field named 'file'")
    return await upload.read()


async def until_done_or_disconnect(request: Request, work, timeout: float):
    """Run ``work``; cancel it if the client goes away or the deadline passes; a full queue is a 503."""
    task = asyncio.ensure_future(work)
    metrics = _state(request).metrics

    async def disconnected():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watch = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watch}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task in done:
        try:
            return task.result()
        except QueueFull as exc:
            metrics.rejected.labels("queue_full").inc()
            raise Problem(503, "Service Unavailable", f"busy: {exc}", {"Retry-After": "1"}) from exc
        except (WorkerLost, Stopped) as exc:
            metrics.rejected.labels("worker_lost" if isinstance(exc, WorkerLost) else "stopped").inc()
            raise Problem(503, "Service Unavailable", str(exc), {"Retry-After": "2"}) from exc
    task.cancel()
    if watch in done:
        raise Problem(499, "Client Closed Request", "the client went away; its work was cancelled")
    raise Problem(503, "Service Unavailable", f"request did not finish within {timeout:g} s", {"Retry-After": "1"})


def binary_response(data: bytes, media_type: str, headers: dict[str, str]) -> Response:
    if len(data) <= STREAM_CHUNK:
        return Response(data, media_type=media_type, headers=headers)
    headers = headers | {"Content-Length": str(len(data))}
    chunks = (data[i : i + STREAM_CHUNK] for i in range(0, len(data), STREAM_CHUNK))
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


@router.post("/compress", dependencies=[Depends(require_api_key)], response_class=Response, **COMPRESS)
async def compress(
    request: Request,
    model: str | None = Query(None, description="model id (GET /models); default: the service default"),
    quality: float | None = Query(None, ge=QUALITY_MIN, le=QUALITY_MAX,
                                  description=f"{QUALITY_MIN:g}..{QUALITY_MAX:g}, fractional allowed (default {DEFAULT_QUALITY:g})"),
    target_bpp: float | None = Query(None, gt=0, le=24),
    target_psnr: float | None = Query(None, gt=0, le=100),
    tile: int | None = Query(None, ge=TILE_MIN, le=TILE_MAX, multiple_of=TILE_MULTIPLE),
    refine: Annotated[int, Field(ge=0, le=MAX_REFINE)] | Literal["auto"] = Query(
        0, description="encoder-side refinement steps: fewer bits for the same quality, each step costing about 1.4 "
        f"decodes of the image (0: one-pass encoder); auto: up to {AUTO_REFINE_STEPS} steps within {AUTO_REFINE_WORK:g} "
        "megapixel-steps of work (none for images too large for 5)"),
    frame: int | None = Query(None, ge=0, le=MAX_FRAME, description="which frame of an animated image to code "
                              "(from 0); an animated image without it is refused with 422"),
    icc: str = Query("convert", pattern="^(convert|keep)$", description="an embedded colour profile: convert the "
                     "image to sRGB (default), or keep an RGB profile: code the image's own numbers and return the "
                     "profile with the decoded image"),
):
    """Compress an image sent as the raw body (``Content-Type: image/...``) or as multipart field ``file``."""
    state = _state(request)
    settings, engine, metrics = state.settings, state.engine, state.metrics
    started = time.perf_counter()
    if sum(v is not None for v in (quality, target_bpp, target_psnr)) > 1:
        raise Problem(400, "Bad Request", "give at most one of quality, target_bpp, target_psnr")
    model = model or settings.default_model
    package = state.packages.get(model)
    if package is None:
        raise ModelError(f"unknown model {model!r} (available: {', '.join(state.packages)})")
    body = await image_from_request(request, settings.max_body_bytes)
    metrics.bytes_in.labels("compress").inc(len(body))
    planes = await asyncio.to_thread(image_io.read_image, body, settings.max_pixels, frame, icc == "keep")
    height, width = planes.rgb.shape[:2]
    tile = tile or settings.tile
    grid = TileGrid(width, height, tile)
    if grid.count > settings.max_tiles:
        raise LimitError(f"{grid.count} tiles exceed the limit of {settings.max_tiles}; use a larger tile")
    if refine == AUTO_REFINE:
        refine = auto_refine_steps(grid.coded_megapixels(package.padding_multiple), target_kind(target_bpp, target_psnr))

    work = engine.compress(model, package, planes, grid, quality, target_bpp, target_psnr, refine)
    data, q, psnr = await until_done_or_disconnect(request, work, settings.request_timeout_s)
    bpp = len(data) * 8 / (width * height)
    metrics.bpp.labels(model, str(round(q))).observe(bpp)
    metrics.pixels.labels("compress").inc(width * height)
    metrics.bytes_out.labels("compress").inc(len(data))
    headers = {
        "X-LIC-Model": model, "X-LIC-Quality": f"{q:g}", "X-LIC-BPP": f"{bpp:.5f}",
        "X-LIC-Width": str(width), "X-LIC-Height": str(height), "X-LIC-Tiles": str(grid.count),
        "X-LIC-Transforms": package.precision("g_a", settings.transforms),
        "Server-Timing": f"total;dur={1000 * (time.perf_counter() - started):.1f}",
        "Content-Disposition": 'attachment; filename="image.lic"',
    }
    if psnr is not None:
        headers["X-LIC-PSNR"] = f"{psnr:.3f}"
    return binary_response(data, LIC_MEDIA_TYPE, headers)


def negotiate(accept: str) -> str | None:
    """The output format for an Accept header (RFC 9110 12.5.1): the one with the highest q-value,
    each format weighed by the most specific range that names it; q=0 excludes; ties go by PREFERENCE."""
    ranges = []
    for part in accept.split(","):
        media, *parameters = (item.strip() for item in part.split(";"))
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        ranges.append((media.lower() or "*/*", q))
    best, best_q = None, 0.0
    for fmt in PREFERENCE:
        media = image_io.MEDIA_TYPES[fmt]
        specificity = {media: 3, f"{media.split('/')[0]}/*": 2, "*/*": 1}
        matches = [(specificity[m], q) for m, q in ranges if m in specificity]
        q = max(matches)[1] if matches else 0.0
        if q > best_q:
            best, best_q = fmt, q
    return best


def output_format(request: Request, fmt: str | None) -> str:
    if fmt is not None:
        return image_io.output_format(fmt)
    accept = request.headers.get("accept") or "*/*"
    chosen = negotiate(accept)
    if chosen is None:
        raise Problem(406, "Not Acceptable", f"can answer {', '.join(image_io.MEDIA_TYPES[f] for f in PREFERENCE)}, not {accept}")
    return chosen


def parse_region(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise Problem(400, "Bad Request", "region must be x,y,w,h (integers)") from None
    return x, y, w, h


@router.post("/decompress", dependencies=[Depends(require_api_key)], response_class=Response, **DECOMPRESS)
async def decompress(
    request: Request,
    format: str | None = Query(None, pattern="^(png|webp|jpeg|jpg|avif)$", description="output format; default from Accept, else PNG"),
    output_quality: int | None = Query(None, ge=1, le=100, description="lossy output quality for webp, jpeg and avif "
                                       "(default: webp lossless, jpeg 95, avif 90; png is always lossless)"),
    region: str | None = Query(None, pattern="^[0-9]+,[0-9]+,[0-9]+,[0-9]+$",
                               description="x,y,w,h: decode only the tiles this region needs"),
    width: int | None = Query(None, ge=1, le=MAX_DIMENSION, description="fit the output within this width (downscale only, Lanczos)"),
    height: int | None = Query(None, ge=1, le=MAX_DIMENSION, description="fit the output within this height (downscale only, Lanczos)"),
):
    """Decompress a .lic bitstream sent as the raw body."""
    state = _state(request)
    settings, engine, metrics = state.settings, state.engine, state.metrics
    media = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if media not in ("application/octet-stream", LIC_MEDIA_TYPE, "application/x-lic"):
        raise Problem(415, "Unsupported Media Type", f"send a .lic bitstream as {LIC_MEDIA_TYPE} or application/octet-stream, not {media}")
    fmt = output_format(request, format)
    box = parse_region(region)
    data = await read_body(request, settings.max_body_bytes)
    metrics.bytes_in.labels("decompress").inc(len(data))
    header = bitstream.parse(data)
    package = state.packages.get(header.model_id)
    check_model(header, package)
    plan: RegionPlan = plan_region(header, box)
    region_width, region_height = plan.region[2], plan.region[3]
    if region_width * region_height > settings.max_pixels:
        raise LimitError(f"output of {region_width}x{region_height} pixels exceeds the limit of {settings.max_pixels}")
    if len(plan.tiles) > settings.max_tiles:
        raise LimitError(f"{len(plan.tiles)} tiles exceed the limit of {settings.max_tiles}")
    # The output depends only on the bitstream, the model's weights, what its synthesis runs in and these
    # parameters: a strong ETag.
    synthesis = package.precision("g_s", settings.transforms)
    identity = json.dumps([hashlib.sha256(data).hexdigest(), package.manifest.fingerprint, synthesis, fmt, output_quality,
                           plan.region, width, height])
    caching = {"ETag": f'"{hashlib.sha256(identity.encode()).hexdigest()[:32]}"', "Cache-Control": settings.cache_control, "Vary": "Accept"}
    if caching["ETag"] in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=caching)

    async def work():
        alpha = await asyncio.to_thread(region_alpha, data, header, plan)
        tiles = await engine.decode(data, header, package, plan)
        image = await asyncio.to_thread(assemble, data, header, plan, tiles, alpha)
        if width or height:
            image = await asyncio.to_thread(image_io.fit_within, image, width, height)
        return image.size, await asyncio.to_thread(image_io.write_image, image, fmt, output_quality)

    (out_width, out_height), encoded = await until_done_or_disconnect(request, work(), settings.request_timeout_s)
    metrics.pixels.labels("decompress").inc(region_width * region_height)
    metrics.bytes_out.labels("decompress").inc(len(encoded))
    headers = {"X-LIC-Model": header.model_id, "X-LIC-Width": str(out_width), "X-LIC-Height": str(out_height), "X-LIC-Tiles-Decoded": str(len(plan.tiles)),
               "X-LIC-Transforms": synthesis, "Content-Disposition": f'inline; filename="image.{fmt.lower()}"', **caching}
    return binary_response(encoded, image_io.MEDIA_TYPES[fmt], headers)


class SameSizeResult(BaseModel):
    codec: str
    label: str
    media_type: str
    setting: int
    bytes: int
    bpp: float
    fits: bool
    psnr: float | None  # dB; null when the decoded image is identical to the input (infinite)
    ms_ssim: float
    encode_ms: float
    decode_ms: float
    data: str  # the codec's own file, base64


class Comparison(BaseModel):
    width: int
    height: int
    target_bytes: int
    results: list[SameSizeResult]


@router.post("/compare", dependencies=[Depends(require_api_key)], response_model=Comparison, **COMPARE)
async def compare(
    request: Request,
    target_bytes: int = Query(..., ge=1, le=1 << 30, description="the byte budget: typically the size of the image's .lic"),
    codecs: str = Query("jpeg,webp,avif", pattern=f"^({'|'.join(CODECS)})(,({'|'.join(CODECS)}))*$",
                        description="which classical codecs, comma-separated"),
    frame: int | None = Query(None, ge=0, le=MAX_FRAME, description="which frame of an animated image"),
):
    """JPEG (4:2:0), WebP and AVIF (speed 6) at the highest quality whose file fits ``target_bytes``, found
    by bisection: each codec's file (base64), setting, PSNR and MS-SSIM against the image's 8-bit sRGB
    pixels, and encode and decode times. The image is sent as for /compress; alpha is not compared.
    One comparison runs at a time (503 while another does); images over LIC_MAX_COMPARE_PIXELS are 413."""
    state = _state(request)
    settings = state.settings
    body = await image_from_request(request, settings.max_body_bytes)
    planes = await asyncio.to_thread(image_io.read_image, body, settings.max_compare_pixels, frame)
    if state.comparing.locked():
        raise Problem(503, "Service Unavailable", "busy: another comparison is running", {"Retry-After": "2"})
    async with state.comparing:
        deadline = time.monotonic() + settings.request_timeout_s
        try:
            results = await asyncio.to_thread(same_size, planes.rgb, target_bytes, list(dict.fromkeys(codecs.split(","))), deadline)
        except Stopped as exc:
            raise Problem(503, "Service Unavailable", str(exc), {"Retry-After": "2"}) from exc
    height, width = planes.rgb.shape[:2]
    return Comparison(width=width, height=height, target_bytes=target_bytes, results=[
        SameSizeResult(codec=r.codec, label=r.label, media_type=r.media_type, setting=r.setting, bytes=len(r.data),
                       bpp=len(r.data) * 8 / (width * height), fits=r.fits, psnr=r.psnr if math.isfinite(r.psnr) else None, ms_ssim=r.ms_ssim,
                       encode_ms=r.encode_ms, decode_ms=r.decode_ms, data=base64.b64encode(r.data).decode())
        for r in results])


@router.get("/models")
async def models(request: Request):
    """Shipped models with their qualities, measured Kodak bpp/PSNR, and what their transforms run in here."""
    out = []
    for model_id, package in _state(request).packages.items():
        m = package.manifest
        out.append({
            "id": model_id, "default": model_id == _state(request).settings.default_model,
            "architecture": m.architecture, "widths": m.widths, "version": m.version, "fingerprint": m.fingerprint,
            "transforms": package.transforms(_state(request).settings.transforms),
            "qualities": m.qualities.model_dump(), "kodak": [row.model_dump() for row in m.kodak],
        })
    return out


@router.get("/healthz")
async def healthz():
    return {"status": "alive"}


@router.get("/readyz", responses={503: {"description": "starting or draining"}})
async def readyz(request: Request):
    state = _state(request)
    if state.engine.ready and not state.draining:
        return {"status": "ready", "workers": state.engine.pool.devices}
    return JSONResponse({"status": "draining" if state.draining else "starting"}, status_code=503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request):
    return Response(generate_latest(_state(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)
