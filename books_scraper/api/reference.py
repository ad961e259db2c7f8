"""GET /api/v1 (a small JSON index) and GET /api/v1/docs: the OpenAPI document rendered by Swagger
UI, from the assets the swagger-ui-bundle package ships (no CDN: it works offline). "Try it out"
sends requests to this same server (the document's `servers`), a Bearer token included once it is
given to "Authorize"."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from datasette.utils.asgi import Response
from swagger_ui_bundle import swagger_ui_path

from books_scraper.api.errors import ApiError
from books_scraper.api.web import API_PREFIX, api_route, json_response

ASSETS = Path(swagger_ui_path)
# The files the page loads, and their types: nothing else in the package is served.
ASSET_TYPES = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
ASSET_CACHE = "public, max-age=86400"

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Books API reference</title>
  <link rel="icon" type="image/png" href="{prefix}/docs/assets/favicon-32x32.png">
  <link rel="stylesheet" href="{prefix}/docs/assets/swagger-ui.css">
  <!-- Every path documents its CORS preflight (OPTIONS) for clients; on this page it only doubles
       the list: a browser sends it by itself. -->
  <style>.opblock-options {{ display: none; }}</style>
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{prefix}/docs/assets/swagger-ui-bundle.js"></script>
  <script src="{prefix}/docs/init.js"></script>
</body>
</html>
"""

# A file of its own, not an inline script, so the page needs nothing more of the CSP.
INIT = """window.ui = SwaggerUIBundle({
  url: "%s/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,
  tryItOutEnabled: false,
});
""" % API_PREFIX


async def index(request, datasette):
    def url(path: str) -> str:
        return datasette.absolute_url(request, f"{API_PREFIX}{path}")

    return json_response(
        {
            "name": "books-api",
            "version": version("books-scraper"),
            "docs": url("/docs"),
            "openapi": url("/openapi.json"),
            "health": url("/health"),
        }
    )


async def page(request, datasette):
    return Response.html(PAGE.format(prefix=API_PREFIX))


async def init_script(request, datasette):
    return Response(INIT, content_type="text/javascript; charset=utf-8")


async def asset(request, datasette):
    name = request.url_vars["name"]
    if name not in ASSET_TYPES:
        raise ApiError(404, f"no API reference asset named {name!r}", "not_found")
    return Response(
        (ASSETS / name).read_bytes(),
        content_type=ASSET_TYPES[name],
        headers={"Cache-Control": ASSET_CACHE},
    )


def page_file(handler):
    """A file the reference page loads: served like any API route, not an operation of the API
    (the OpenAPI document describes the page, not its scripts; tests/test_api_openapi.py reads this)."""
    view = api_route(get=handler)
    view.documented = False
    return view


ROUTES = [
    (r"^/api/v1$", api_route(get=index)),
    (r"^/api/v1/docs$", api_route(get=page)),
    (r"^/api/v1/docs/init\.js$", page_file(init_script)),
    (r"^/api/v1/docs/assets/(?P<name>[A-Za-z0-9._-]{1,64})$", page_file(asset)),
]
