"""/api/v1 answers JSON even for paths and failures no API view handled, and skips cookie CSRF.
(Datasette's own pages: plugins/datasette_errors.py.)"""

import logging

from datasette import hookimpl
from datasette.utils.asgi import NotFound

from books_scraper.api.errors import ApiError
from books_scraper.api.web import API_PREFIX, error_response

logger = logging.getLogger(__name__)


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


@hookimpl
def handle_exception(datasette, request, exception):
    if not is_api_path(request.path):
        return None
    if isinstance(exception, NotFound):
        return error_response(ApiError(404, f"no API route at {request.path}", "not_found"))
    logger.error("unhandled error on %s %s", request.method, request.path, exc_info=exception)
    return error_response(ApiError(500, "internal error", "internal_error"))


@hookimpl
def skip_csrf(datasette, scope):
    # The API authenticates by Authorization header only, never by cookie, so a cross-site form
    # cannot act for anyone; skipping keeps every /api/v1 answer in the JSON envelope.
    return scope["type"] == "http" and is_api_path(scope["path"])
