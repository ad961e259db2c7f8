"""What every /api/v1 view shares: the JSON envelope, method dispatch, pagination links, request
bodies with a size limit, the served databases and the permission check."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from datasette.utils import actor_matches_allow
from datasette.utils.asgi import Response

from books_scraper.api.config import ACTIONS, api_config
from books_scraper.api.errors import ApiError
from books_scraper.api.params import Page
from books_scraper.web.observability import note_actor
from books_scraper.web.served_metadata import BOOKS_DATABASE, OPERATIONS_DATABASE

API_PREFIX = "/api/v1"

Handler = Callable[[Any, Any], Awaitable[Any]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(data, default=str),
        status=status,
        headers=headers,
        content_type="application/json; charset=utf-8",
    )


def error_response(error: ApiError) -> Response:
    body = {"ok": False, "status": error.status, "error": error.message, "error_code": error.code}
    if error.details:
        body["details"] = error.details
    return json_response(body, error.status, error.headers)


def api_route(**handlers: Handler) -> Callable:
    """One view per path: dispatch on the method, 405 for the others, ApiError -> envelope.

    HEAD is answered wherever GET is, by the GET handler: the server sends its headers, not its body.
    OPTIONS is 204 with Allow everywhere (a CORS preflight; protection.py adds the CORS headers)."""
    declared = tuple(method.upper() for method in handlers)
    methods = {method.upper(): handler for method, handler in handlers.items()}
    if "GET" in methods:
        methods["HEAD"] = methods["GET"]
    allow = ", ".join(methods)

    async def view(request, datasette):
        note_actor(request.actor)  # for the request's log line
        handler = methods.get(request.method)
        if request.method == "OPTIONS":
            return Response("", status=204, headers={"Allow": f"{allow}, OPTIONS"})
        try:
            if handler is None:
                raise ApiError(
                    405, f"{request.method} is not allowed here; use {allow}",
                    "method_not_allowed", headers={"Allow": allow},
                )
            return await handler(request, datasette)
        except ApiError as error:
            return error_response(error)

    view.methods = declared  # read by the OpenAPI test (HEAD is implied by GET)
    return view


def page_body(request, datasette, key: str, rows: list, total: int, page: Page) -> dict:
    """The list envelope every paginated route answers with."""
    next_url = None
    if page.offset + len(rows) < total:
        query = [(k, v) for k, v in parse_qsl(request.query_string) if k not in ("limit", "offset")]
        query += [("limit", str(page.limit)), ("offset", str(page.offset + page.limit))]
        next_url = datasette.absolute_url(request, f"{request.path}?{urlencode(query)}")
    return {key: rows, "total": total, "limit": page.limit, "offset": page.offset, "next": next_url}


def is_json_media_type(content_type: str | None) -> bool:
    """application/json or a +json type (application/problem+json ...), any parameters (charset)."""
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


async def read_json(request, max_bytes: int) -> Any:
    """The request body as JSON: 415 unless sent as JSON, 413 past max_bytes without reading further,
    400 if not JSON."""
    if not is_json_media_type(request.headers.get("content-type")):
        raise ApiError(
            415, "send the body as JSON with Content-Type: application/json", "unsupported_media_type"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    body = b""
    more = True
    while more:
        message = await request.receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > max_bytes:
            raise _too_large(max_bytes)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ApiError(400, "the request body is not valid JSON", "invalid_json") from None


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"the request body is larger than {max_bytes} bytes", "payload_too_large")


def books_database(datasette):
    return _database(datasette, BOOKS_DATABASE)


def operations_database(datasette):
    return _database(datasette, OPERATIONS_DATABASE)


def _database(datasette, name: str):
    try:
        return datasette.get_database(name)
    except KeyError:
        raise ApiError(503, f"the {name!r} database is not served", "database_unavailable") from None


async def require_permission(datasette, request, action: str) -> dict:
    """The request's actor if it may do `action`: 401 without valid credentials, 403 without the role."""
    actor = request.actor
    # Header credentials only: a cookie actor could be a cross-site request (CSRF is skipped here).
    if not actor or not (request.headers.get("authorization") or "").startswith("Bearer "):
        raise ApiError(
            401, "authentication required: send Authorization: Bearer <token>", "unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="books-api"'},
        )
    if not await datasette.permission_allowed(actor, action, default=False):
        raise ApiError(403, f"this actor may not {action}", "forbidden", action=action)
    return actor


def permission_allowed(datasette, actor, action: str) -> bool | None:
    """An API action is allowed when the actor matches its allow block in the configuration's
    `permissions` (no block: no one); None, no opinion, for every other Datasette action."""
    if action not in ACTIONS:
        return None
    allow = api_config(datasette).permissions.get(action)
    return allow is not None and actor_matches_allow(actor, allow)
