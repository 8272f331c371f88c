"""The FastAPI application: routes, engine lifecycle, per-request metrics and one log line per request."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from starlette.middleware.cors import CORSMiddleware

from service.api import openapi, pages
from service.api.routes import router
from service.codec.limits import check_context
from service.codec.zoo import available_models, load_model
from service.core import problems
from service.core.config import Settings
from service.core.metrics import Metrics
from service.engine.engine import Engine

access_log = logging.getLogger("lic.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
EXPOSED_HEADERS = ["X-Request-ID", "X-LIC-Model", "X-LIC-Quality", "X-LIC-BPP", "X-LIC-PSNR", "X-LIC-Width", "X-LIC-Height",
                   "X-LIC-Tiles", "X-LIC-Tiles-Decoded", "X-LIC-Transforms", "Server-Timing", "Content-Disposition", "Retry-After"]
ENDPOINTS = {"compress", "decompress", "compare", "models", "healthz", "readyz", "metrics"}  # the endpoint label's values, plus "other"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.packages = {model_id: load_model(model_id, settings.model_dir) for model_id in available_models(settings.model_dir)}
        if settings.default_model not in app.state.packages:
            raise RuntimeError(f"default model {settings.default_model!r} is not installed")
        for package in app.state.packages.values():
            try:
                check_context(settings.context, package.context_multiple)
            except ValueError as exc:
                raise RuntimeError(f"LIC_CONTEXT does not fit model {package.id}: {exc}") from exc
        if settings.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.registry)
        await app.state.engine.start()
        yield
        app.state.draining = True
        await app.state.engine.stop()

    app = FastAPI(title="lic", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,  # pages.py, from local assets
                  description="Learned image compression: POST an image to /compress, a .lic bitstream to /decompress.")
    app.state.settings, app.state.metrics, app.state.draining = settings, metrics, False
    app.state.engine = Engine(settings, metrics)
    app.state.packages = {}
    app.state.comparing = asyncio.Lock()  # one comparison at a time: each is dozens of classical encodes
    metrics.ready.set_function(lambda: float(app.state.engine.ready and not app.state.draining))
    problems.install(app)
    openapi.install(app)
    app.include_router(router)
    pages.install(app)
    if settings.cors_origins:  # outermost: preflights are answered before anything else runs
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Accept", "X-Request-ID"],
                           expose_headers=EXPOSED_HEADERS, max_age=600)

    @app.middleware("http")
    async def observe(request: Request, call_next):
        started = time.perf_counter()
        metrics.in_flight.inc()
        status = 500
        given = request.headers.get("x-request-id", "")
        request_id = given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]  # a client's id only if it is tame
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            endpoint = request.url.path.strip("/") if request.url.path.strip("/") in ENDPOINTS else "other"
            metrics.requests.labels(endpoint, str(status)).inc()
            metrics.request_duration.labels(endpoint).observe(elapsed)
            if endpoint not in ("metrics", "healthz", "readyz"):
                access_log.info(json.dumps({
                    "ts": round(time.time(), 3), "id": request_id,
                    "method": request.method, "path": request.url.path, "query": request.url.query, "status": status,
                    "ms": round(1000 * elapsed, 1), "bytes_in": int(request.headers.get("content-length") or 0),
                    "client": request.client.host if request.client else None,
                }))

    return app
