"""What a person opens in a browser: ``GET /``, one page that shows the codec on an image of theirs, and
``GET /docs``, Swagger UI from assets served by the app itself (so it works without the internet).

Neither needs an API key (the page asks for one and sends it to the API as Bearer), and neither is part
of the OpenAPI document. The Swagger UI files come from the ``swagger-ui-bundle-v2`` package (Swagger UI
5, which reads the OpenAPI 3.1 document FastAPI writes; the older ``swagger-ui-bundle`` ships 4.15, which
cannot).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

STATIC = Path(__file__).resolve().parent / "static"
SWAGGER_ASSETS = "/assets/swagger-ui"


def install(app: FastAPI) -> None:
    """Add ``/``, ``/docs`` and the Swagger UI assets (create the app with ``docs_url=None``)."""
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"), title=f"{app.title} - API documentation",
            swagger_js_url=f"{root}{SWAGGER_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{SWAGGER_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{SWAGGER_ASSETS}/favicon-32x32.png",
            # validatorUrl: None, or Swagger UI would show a badge fetched from swagger.io
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )
