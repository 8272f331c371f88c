"""RFC 9457 problem details for every error response; never a traceback, never a 500 for bad input."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.codec.errors import BitstreamError, ImageError, LimitError, ModelError, Stopped

log = logging.getLogger("lic.service")
PROBLEM = "application/problem+json"


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or {}


def problem_response(status: int, title: str, detail: str, instance: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": instance}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# Codec errors -> (status, title)
CODEC_STATUS = {
    LimitError: (413, "Content Too Large"),
    ImageError: (422, "Undecodable image"),
    BitstreamError: (422, "Invalid bitstream"),
    ModelError: (400, "Unknown model"),
    Stopped: (503, "Service Unavailable"),
}


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, request.url.path, exc.headers)

    for error, (status, title) in CODEC_STATUS.items():
        app.add_exception_handler(error, lambda request, exc, s=status, t=title: problem_response(s, t, str(exc), request.url.path))

    @app.exception_handler(ValueError)
    async def _value(request: Request, exc: ValueError):
        return problem_response(400, "Bad Request", str(exc), request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return problem_response(400, "Bad Request", detail, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return problem_response(exc.status_code, str(exc.detail), str(exc.detail), request.url.path, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(500, "Internal Server Error", "unexpected server error; it has been logged", request.url.path)
