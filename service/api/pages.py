"""What a person opens in a browser: ``GET /``, one page that shows the codec on an image of theirs, and
``GET /docs`` and ``GET /redoc``, Swagger UI and ReDoc from assets served by the app itself (so they work
without the internet).

None needs an API key (the page asks for one and sends it to the API as Bearer), and none is part of the
OpenAPI document. The Swagger UI (5, which reads the OpenAPI 3.1 document FastAPI writes) and ReDoc files
come from the ``fastapi-standalone-docs`` package; only its files are used, not its patching of FastAPI.
"""
from __future__ import annotations

from pathlib import Path

import fastapi_standalone_docs
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"
DOCS_FILES = Path(fastapi_standalone_docs.__file__).resolve().parent / "static"
SWAGGER_ASSETS, REDOC_ASSETS, FAVICON = "/assets/swagger-ui", "/assets/redoc", "/assets/fastapi/favicon.png"


def install(app: FastAPI) -> None:
    """Add ``/``, ``/docs``, ``/redoc`` and their assets (create the app with ``docs_url=None, redoc_url=None``)."""
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=str(DOCS_FILES / "swagger")), name="swagger-ui")
    app.mount(REDOC_ASSETS, StaticFiles(directory=str(DOCS_FILES / "redoc")), name="redoc")
    app.mount(FAVICON.rsplit("/", 1)[0], StaticFiles(directory=str(DOCS_FILES / "fastapi")), name="docs-favicon")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} - API documentation",
            swagger_js_url=f"{root}{SWAGGER_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{FAVICON}",
            # validatorUrl: None, or Swagger UI would show a badge fetched from swagger.io
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} - API reference",
                              redoc_js_url=f"{root}{REDOC_ASSETS}/redoc.standalone.js", redoc_favicon_url=f"{root}{FAVICON}",
                              with_google_fonts=False)
