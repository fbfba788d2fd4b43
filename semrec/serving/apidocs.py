"""The API documentation pages (/docs: Swagger UI, /redoc: ReDoc) served with their scripts and styles from this
app, so they work on a machine without internet access. FastAPI's own pages load them from a CDN.

The files come from the `fastapi-offline` package (Swagger UI 5 and ReDoc 2 builds; Swagger UI 5 is the first
that renders the OpenAPI 3.1 schema FastAPI writes). They are read once at start-up from a fixed list: no request
names a file.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, Response

ASSET_PREFIX = "/docs-assets"
ASSETS = {  # served name -> media type
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}


def _read_assets() -> dict[str, bytes]:
    root = resources.files("fastapi_offline").joinpath("static")
    return {name: root.joinpath(name).read_bytes() for name in ASSETS}


def add_api_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at `docs_url` and ReDoc at `redoc_url` from local files. Build the app with
    `docs_url=None, redoc_url=None` so FastAPI's CDN pages are not registered as well."""
    files = _read_assets()
    title = app.title
    oauth2 = docs_url + "/oauth2-redirect"

    def asset_route(name: str, media_type: str) -> None:
        body = files[name]

        @app.get(f"{ASSET_PREFIX}/{name}", include_in_schema=False, name=f"docs-asset-{name}")
        def asset() -> Response:
            return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})

    for name, media_type in ASSETS.items():
        asset_route(name, media_type)

    @app.get(docs_url, include_in_schema=False)
    def swagger() -> HTMLResponse:
        # validatorUrl None: Swagger UI would otherwise fetch a badge from an online validator
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{title} - API", oauth2_redirect_url=oauth2,
                                   swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSET_PREFIX}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get(oauth2, include_in_schema=False)
    def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{title} - API",
                              redoc_js_url=f"{ASSET_PREFIX}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSET_PREFIX}/favicon.png", with_google_fonts=False)
