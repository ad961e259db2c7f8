"""What every /api/v1 view shares: the JSON envelope, method dispatch, pagination links, request
bodies with a size limit, the served databases and the permission check."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode

from dataclasses import dataclass

from datasette.database import QueryInterrupted
from datasette.utils import actor_matches_allow
from datasette.utils.asgi import Response

from books_scraper.api.config import ACTIONS, api_config
from books_scraper.api.errors import ApiError, query_interrupted
from books_scraper.api.params import CURSOR, Cursor, Page, encode_cursor
from books_scraper.web.observability import note_actor
from books_scraper.web.served_metadata import BOOKS_DATABASE, OPERATIONS_DATABASE

API_PREFIX = "/api/v1"
# A filtered list counts at most this many rows: past it, `total` is COUNT_CAP and `total_exact` false.
COUNT_CAP = 10_000

Handler = Callable[[Any, Any], Awaitable[Any]]


# json.dumps(data, default=str) made once: the same text. No check for a list or dict inside itself,
# which an answer built from rows never is (the check keeps a marker for every list and dict encoded).
JSON_ENCODER = json.JSONEncoder(default=str, check_circular=False)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        JSON_ENCODER.encode(data),
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
        except QueryInterrupted:  # stopped at the SQL time limit: not a server fault
            return error_response(query_interrupted(datasette.setting("sql_time_limit_ms")))

    view.methods = declared  # read by the OpenAPI test (HEAD is implied by GET)
    return view


def page_body(
    request, datasette, key: str, rows: list, total: int, page: Page, total_exact: bool = True
) -> dict:
    """The list envelope every paginated route answers with; `next` by offset."""
    next_url = None
    if page.offset + len(rows) < total:
        query = [(k, v) for k, v in parse_qsl(request.query_string) if k not in ("limit", "offset")]
        query += [("limit", str(page.limit)), ("offset", str(page.offset + page.limit))]
        next_url = datasette.absolute_url(request, f"{request.path}?{urlencode(query)}")
    return _envelope(key, rows, total, total_exact, page, next_url)


def cursor_page_body(
    request, datasette, key: str, rows: list, total: int, page: Page, next_cursor: str | None,
    total_exact: bool = True,
) -> dict:
    """The same envelope on a keyset route: `next` carries `after=<next_cursor>` (no offset)."""
    next_url = None
    if next_cursor is not None:
        query = [(k, v) for k, v in parse_qsl(request.query_string) if k not in ("limit", "offset", CURSOR)]
        query += [("limit", str(page.limit)), (CURSOR, next_cursor)]
        next_url = datasette.absolute_url(request, f"{request.path}?{urlencode(query)}")
    return _envelope(key, rows, total, total_exact, page, next_url)


def _envelope(key: str, rows: list, total: int, total_exact: bool, page: Page, next_url: str | None) -> dict:
    return {
        key: rows, "total": total, "total_exact": total_exact, "limit": page.limit, "offset": page.offset,
        "next": next_url,
    }


@dataclass(frozen=True)
class Keyset:
    """A list's order for keyset paging: its sort column (None: the id alone), then the id, both one
    way. Each is given as SQL (`b.price`) and as its name in the SELECT's output (`price`); the sort
    column must be NOT NULL, and an index on it (SQLite's index entries end with the rowid) makes
    every page an index range."""

    sort: str  # as the client asked it ("-price"): the cursor keeps it
    column: str | None
    name: str | None
    descending: bool = False
    id_column: str = "b.id"
    id_name: str = "id"


def keyset_sql(select: str, conditions: list[str], keyset: Keyset, page: Page) -> tuple[str, dict]:
    """(SQL, params) of a page: `select` filtered by `conditions` (ANDed), in the keyset's order, from
    the page's cursor (or offset), limit + 1 rows so the caller knows whether a next page exists.

    After a cursor (v, i) the page is the rows with the same sort value and a later id, then the rows
    with a later sort value: two index ranges, each seeked to directly. (A row value comparison
    `(price, id) > (v, i)` seeks on the price alone and walks every row at that price first.)"""
    way, later = ("desc", "<") if keyset.descending else ("asc", ">")
    by_id = f"order by {keyset.id_column} {way}"
    order = f"order by {keyset.column} {way}, {keyset.id_column} {way}" if keyset.column else by_id
    params = {"page_rows": page.limit + 1}
    cursor = page.after
    if cursor is None:
        params["page_offset"] = page.offset
        return f"{select}{_where(conditions)} {order} limit :page_rows offset :page_offset", params
    params["after_id"] = cursor.id
    same_or_id = [*conditions, f"{keyset.id_column} {later} :after_id"]
    if keyset.column is None:
        return f"{select}{_where(same_or_id)} {order} limit :page_rows", params
    params["after_value"] = cursor.value
    same_value = f"{select}{_where([*same_or_id, f'{keyset.column} = :after_value'])} {by_id} limit :page_rows"
    later_value = f"{select}{_where([*conditions, f'{keyset.column} {later} :after_value'])} {order} limit :page_rows"
    sql = (
        f"select * from ({same_value}) union all select * from ({later_value})"
        f" order by {keyset.name} {way}, {keyset.id_name} {way} limit :page_rows"
    )
    return sql, params


def next_cursor(path: str, keyset: Keyset, rows: list, page: Page) -> tuple[list, str | None]:
    """(the page's rows, the cursor of the next page or None) from the limit + 1 rows keyset_sql
    fetched: a next page exists exactly when the extra row came."""
    if len(rows) <= page.limit:
        return rows, None
    rows = rows[: page.limit]
    last = rows[-1]
    value = last[keyset.name] if keyset.name else None
    return rows, encode_cursor(path, Cursor(keyset.sort, value, last[keyset.id_name]))


def _where(conditions: list[str]) -> str:
    return (" where " + " and ".join(conditions)) if conditions else ""


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


class TooManySteps(Exception):
    """A query of read_rows stopped at its max_steps: the caller has a plan whose cost is bounded."""


async def read_rows(datasette, db, sql: str, params: dict, max_steps: int | None = None) -> list[dict]:
    """The rows of one of the API's own queries (a page of at most 1,001 rows) as dicts, read the
    cheap way, under Datasette's SQL time limit (a 503 past it, as for db.execute). Plain tuples
    zipped with the column names, outside the result budget Datasette's connections apply to
    clients' queries (web/query_limits.py: a Python call per row), and text decoded by sqlite3 itself
    rather than by Datasette's lenient decoder (a Python call per value), which decodes only when a
    value is not UTF-8, so every value reads as Datasette reads it. At 1M books this halves the cost
    of reading a page of 50 books (docs/benchmarks.md).

    With max_steps, TooManySteps once SQLite has run that many instructions (counted in thousands):
    a bound on the work, the same for the same data, unlike a time limit."""
    limit_ms = datasette.setting("sql_time_limit_ms")
    return await db.execute_fn(lambda conn: _read_rows(conn, sql, params, Stop(limit_ms, max_steps)))


def _read_rows(conn: sqlite3.Connection, sql: str, params: dict, stop: Stop) -> list[dict]:
    lenient = conn.text_factory  # Datasette's: bytes that are not UTF-8 read as U+FFFD
    conn.text_factory = str  # each execute_fn runs on a connection only its thread uses
    try:
        with stop.watching(conn):
            try:
                return _fetch_dicts(conn, sql, params)
            except sqlite3.OperationalError as error:
                if not str(error).startswith(NOT_UTF8):
                    raise
                conn.text_factory = lenient
                return _fetch_dicts(conn, sql, params)
    except sqlite3.OperationalError as error:
        if error.args == ("interrupted",):
            if stop.out_of_steps:
                raise TooManySteps(sql) from None
            raise query_interrupted(stop.limit_ms) from None
        raise
    finally:
        conn.text_factory = lenient


# sqlite3's error for a text value that is not UTF-8 under the default text factory.
NOT_UTF8 = "Could not decode to UTF-8"


def _fetch_dicts(conn: sqlite3.Connection, sql: str, params: dict) -> list[dict]:
    cursor = conn.cursor()
    cursor.row_factory = None  # this cursor's own: plain tuples
    rows = cursor.execute(sql, params).fetchall()
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in rows]


class Stop:
    """A progress handler that stops a statement after limit_ms, as Datasette's own time limit does
    (checked every 1000 SQLite instructions, every one at 20 ms or less), or after max_steps
    instructions."""

    def __init__(self, limit_ms: int, max_steps: int | None = None) -> None:
        self.limit_ms = limit_ms
        self.every = 1 if limit_ms <= 20 else 1000
        self.deadline = float("inf")  # set as the statement starts (watching)
        self.calls_left = None if max_steps is None else max(1, max_steps // self.every)
        self.out_of_steps = False

    def __call__(self) -> bool:
        if self.calls_left is not None:
            self.calls_left -= 1
            if self.calls_left < 0:
                self.out_of_steps = True
                return True
        return time.perf_counter() >= self.deadline

    @contextmanager
    def watching(self, conn: sqlite3.Connection) -> Iterator[None]:
        """This handler on the connection while the block runs, its time limit counted from now."""
        self.deadline = time.perf_counter() + self.limit_ms / 1000
        conn.set_progress_handler(self, self.every)
        try:
            yield
        finally:
            conn.set_progress_handler(None, 0)


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
    sent_bearer = (request.headers.get("authorization") or "").startswith("Bearer ")
    if not actor or not sent_bearer:
        if sent_bearer:  # a token was sent and matched no one: say so, not "send a token"
            raise ApiError(
                401, "the bearer token is not valid: unknown, expired, or signed with another secret",
                "unauthorized", headers={"WWW-Authenticate": 'Bearer realm="books-api", error="invalid_token"'},
            )
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
