"""Requests Datasette 0.65 would answer with a 500 although the client is at fault, found up front.

`malformed(datasette, request, route, body)` looks only at the request (and the schema it names) and
says what is wrong with it, or None: a well-formed request always reaches Datasette, so a true server
fault still answers 500. plugins/datasette_errors.py answers a malformed one with Datasette's own
error page (JSON for .json URLs) before Datasette runs it, so it never reaches a database. Every JSON
error of a Datasette page carries an `error_code`, as the /api/v1 envelope does (the codes:
docs/publication.md, "Malformed requests").
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl

from datasette.utils.asgi import Request, Response

from books_scraper.web.datasette_internals import (
    AllowDebugView,
    AuthTokenView,
    DatabaseView,
    DatasetteError,
    MessagesDebugView,
    QueryInterrupted,
    Route,
    RowView,
    TableView,
    allowed_methods,
    error_page,
    resolve,
    urlsafe_components,
)
from books_scraper.web.query_limits import MAX_VALUE_BYTES

INTERRUPTED = "SQL query took too long; ask for less, or add _timelimit= up to sql_time_limit_ms"
SQLITE_INTEGERS = range(-(2**63), 2**63)
MESSAGE_TYPES = ("INFO", "WARNING", "ERROR", "all")  # what /-/messages accepts
NUMERIC_LOOKUPS = ("gt", "gte", "lt", "lte")  # Datasette turns an all-digit value into an int
LIST_LOOKUPS = ("in", "notin")  # a value starting with "[" is a JSON list
SHAPES_NEEDING_ROWS = ("array", "arrayfirst")
SHAPES = ("arrays", "objects", "array", "arrayfirst", "object")  # datasette/renderer.py json_renderer
BOOLEANS = ("on", "off", "true", "false", "1", "0")  # datasette.utils.value_as_boolean
TABLE_ARGUMENTS = ("_sort", "_sort_desc", "_through")  # checked against the table's schema
NAME_SHOWN = 40  # characters of an over-long parameter's name said in its error

# error_code of a JSON error, stable for clients to branch on (the /api/v1 envelope's names where the
# meaning is the same): the codes of this module's own answers, and by status for Datasette's own.
BAD_PARAMETER, BAD_BODY = "bad_parameter", "bad_body"
SQL_TOO_LONG, VALUE_TOO_LONG = "sql_too_long", "value_too_long"
QUERY_TIMEOUT, QUERY_FAILED = "query_timeout", "query_failed"
CODES_BY_STATUS = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 500: "internal_error",
}


def code_for_status(status: int) -> str:
    return CODES_BY_STATUS.get(status, f"http_{status}")


@dataclass(frozen=True)
class Malformed:
    status: int
    title: str
    message: str
    allow: tuple[str, ...] = ()
    code: str = ""  # error_code; by status when empty

    @property
    def error_code(self) -> str:
        return self.code or code_for_status(self.status)


def bad(message: str, title: str = "Bad request", code: str = BAD_PARAMETER) -> Malformed:
    return Malformed(400, title, message, code=code)


def is_sql_value(value: object) -> bool:
    """What SQLite can bind: Python's sqlite3 raises (not a DatabaseError) on a dict or a huge int."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return True
    return isinstance(value, int) and value in SQLITE_INTEGERS


def json_or_none(text: str) -> object | None:
    """The JSON value of a parameter, or None when it is not JSON (callers then say what it must be)."""
    try:
        return json.loads(text)
    except ValueError:
        return None


Body = Callable[[], Awaitable[bytes]]  # reads the request body, only when a check needs it


async def malformed(datasette, request: Request, route: Route, body: Body) -> Malformed | None:
    for check in (check_method, check_query_string, check_view):
        problem = await check(datasette, request, route, body)
        if problem:
            return problem
    return None


async def check_method(datasette, request: Request, route: Route, body: Body) -> Malformed | None:
    allowed = allowed_methods(route.view)
    if request.method not in allowed:
        message = f"{request.method} is not allowed here; use {', '.join(allowed)}"
        return Malformed(405, "Method not allowed", message, allowed)
    if route.view is TableView and request.method == "POST":
        return await check_post_to_table(datasette, route, body)
    return None


async def check_post_to_table(datasette, route: Route, body: Body) -> Malformed | None:
    # Datasette takes POST on a table URL for writable canned queries only, and asserts it (500).
    db = database_of(datasette, route)
    name = route.var("table")
    if db is None or name is None:
        return None
    read_only = ("GET", "HEAD", "OPTIONS")
    query = await datasette.get_canned_query(db.name, name, None)
    if query is not None:
        if query.get("write"):
            return check_write_body(await body()) if db.is_mutable else None
        message = f"{name} is a read-only query: use GET"
        return Malformed(405, "Method not allowed", message, read_only)
    if await db.table_exists(name) or name in await db.view_names():
        message = f"{name} is a read-only table: use GET"
        return Malformed(405, "Method not allowed", message, read_only)
    return Malformed(404, "Not found", f"No table or query named {name}")


async def check_query_string(datasette, request: Request, route: Route, body: Body) -> Malformed | None:
    pairs = parse_qsl(request.query_string, keep_blank_values=True)
    too_long = check_lengths(pairs)
    if too_long:
        return too_long
    if any("\x00" in key or "\x00" in value for key, value in pairs):
        # Python's sqlite3 refuses SQL with a NUL in it (ValueError) and names end up in the SQL.
        return bad("The query string contains a NUL character (%00)")
    shape = request.args.get("_shape")
    if shape is not None and route.url_vars.get("format") == "json" and shape not in SHAPES:
        # A query's JSON says so in its body but answers 200; a table's answers 400.
        return bad(f"Invalid _shape: {shape}; one of {', '.join(SHAPES)}")
    infinity = request.args.get("_json_infinity")
    if infinity is not None and infinity.lower() not in BOOLEANS:
        return bad(f"_json_infinity is one of {', '.join(BOOLEANS)}, not {infinity!r}")
    timelimit = request.args.get("_timelimit")
    if timelimit:
        try:
            if int(timelimit) < 0:  # 0 means the default; a negative limit interrupts at once
                raise ValueError
        except ValueError:
            return bad(f"_timelimit is a whole number of milliseconds, 0 or more, not {timelimit!r}")
    return None


def check_lengths(pairs: list[tuple[str, str]]) -> Malformed | None:
    """A value SQLite would refuse ("string or blob too big", and Datasette echoing all of it back):
    the SQL of ?sql= and every other parameter, each bound or run as one value (query_limits.py)."""
    def over(what: str, size: int, title: str, code: str) -> Malformed:
        message = f"{what} is {size:,} bytes, over the limit of {MAX_VALUE_BYTES:,} bytes (SQLITE_LIMIT_LENGTH)"
        return bad(message, title, code)

    for key, value in pairs:
        key_size, size = len(key.encode()), len(value.encode())
        if key_size > MAX_VALUE_BYTES:
            return over("A parameter name", key_size, "Value too long", VALUE_TOO_LONG)
        if size <= MAX_VALUE_BYTES:
            continue
        if key == "sql":
            return over("The SQL", size, "SQL too long", SQL_TOO_LONG)
        name = key if len(key) <= NAME_SHOWN else key[:NAME_SHOWN] + "…"
        return over(f"The value of {name}", size, "Value too long", VALUE_TOO_LONG)
    return None


async def check_view(datasette, request: Request, route: Route, body: Body) -> Malformed | None:
    if route.view is TableView and request.method in ("GET", "HEAD"):
        return await check_table(datasette, request, route)
    if route.view is RowView:
        return await check_row(datasette, route)
    if route.view is DatabaseView and not request.args.get("sql"):
        return check_database_page(request, route)
    if route.view is MessagesDebugView and request.method == "POST":
        return check_message(await body())
    if route.view is AllowDebugView:
        return check_allow_debug(request)
    if route.view is AuthTokenView and not (request.args.get("token") or "").isascii():
        return Malformed(403, "Forbidden", "Invalid token")
    return None


def database_of(datasette, route: Route):
    try:
        return datasette.get_database(route=route.var("database"))
    except KeyError:
        return None  # Datasette answers 404


async def check_table(datasette, request: Request, route: Route) -> Malformed | None:
    db = database_of(datasette, route)
    table = route.var("table")
    if db is None or not table:
        return None
    problem = check_facets(request)
    if problem or not any(key in TABLE_ARGUMENTS or "__" in key for key in request.args):
        return problem
    if not await db.table_exists(table) and table not in await db.view_names():
        return None  # a canned query or no such table: Datasette decides
    for check in (check_sort, check_through):
        problem = await check(datasette, db, table, request)
        if problem:
            return problem
    return check_filters(request)


def check_facets(request: Request) -> Malformed | None:
    # Every _facet* value starting with "{" is a JSON facet config (facets.load_facet_configs).
    for key, values in parse_qs(request.query_string, keep_blank_values=True).items():
        if not key.startswith("_facet"):
            continue
        for value in values:
            if not value.startswith("{"):
                continue
            config = json_or_none(value)
            if not (
                isinstance(config, dict)
                and isinstance(config.get("simple"), str)
                and isinstance(config.get("column", ""), str)
            ):
                return bad(f'{key}={value}: a facet is a column name, or JSON {{"simple": "column"}}')
    return None


async def check_sort(datasette, db, table: str, request: Request) -> Malformed | None:
    sort, sort_desc = request.args.get("_sort"), request.args.get("_sort_desc")
    if sort and sort_desc:
        return bad("Cannot use _sort and _sort_desc at the same time", "Invalid sort")
    wanted = sort or sort_desc
    if not wanted:
        return None
    metadata = datasette.table_metadata(db.name, table)
    if "sortable_columns" in metadata:
        sortable = set(metadata["sortable_columns"])
    else:
        sortable = set(await db.table_columns(table))
        if not await db.primary_keys(table) and table not in await db.view_names():
            sortable.add("rowid")
    if wanted not in sortable:
        return bad(f"Cannot sort table by {wanted}", "Invalid sort")
    return None


async def check_through(datasette, db, table: str, request: Request) -> Malformed | None:
    usage = '_through is JSON {"table": ..., "column": ..., "value": ...}'
    for through in request.args.getlist("_through"):
        spec = json_or_none(through)
        if not (
            isinstance(spec, dict)
            and isinstance(spec.get("table"), str)
            and isinstance(spec.get("column"), str)
            and "value" in spec
            and is_sql_value(spec["value"])
        ):
            return bad(f"{usage}, not {through}")
        other = spec["table"]
        foreign_keys = await db.foreign_keys_for_table(other) if await db.table_exists(other) else []
        if not any(fk["other_table"] == table for fk in foreign_keys):
            return bad(f"_through: table {other!r} has no foreign key to {table!r}")
    return None


def check_filters(request: Request) -> Malformed | None:
    for key, value in parse_qsl(request.query_string, keep_blank_values=True):
        if "__" not in key:  # Datasette's own arguments (_sort...) and plain column=value
            continue
        column, lookup = key.rsplit("__", 1)
        if lookup in NUMERIC_LOOKUPS and value.isdigit():
            if not value.isascii() or int(value) not in SQLITE_INTEGERS:
                return bad(f"{key}={value}: not a number SQLite can compare")
        if lookup in LIST_LOOKUPS and value.startswith("["):
            values = json_or_none(value)
            if not isinstance(values, list) or not all(map(is_sql_value, values)):
                return bad(f'{key}={value}: a JSON list of values, e.g. ["a", "b"], or a,b')
    return None


async def check_row(datasette, route: Route) -> Malformed | None:
    db = database_of(datasette, route)
    table, pk_path = route.var("table"), route.url_vars.get("pks")
    if db is None or not table or pk_path is None or not await db.table_exists(table):
        return None
    keys = await db.primary_keys(table) or ["rowid"]
    values = urlsafe_components(pk_path)
    if len(values) != len(keys):
        return Malformed(
            404, "Not found", f"A {table} row is named by {len(keys)} value(s) ({', '.join(keys)})"
        )
    return None


def check_database_page(request: Request, route: Route) -> Malformed | None:
    # Without ?sql= a database page has no rows: its CSV and array shapes fail with a KeyError.
    if route.url_vars.get("format") == "csv":
        return Malformed(404, "Not found", "A database has no CSV: ask for a table, or add ?sql=")
    shape = request.args.get("_shape")
    if shape in SHAPES_NEEDING_ROWS:
        return bad(f"_shape={shape} needs rows: ask for a table, or add ?sql=")
    return None


def check_write_body(body: bytes) -> Malformed | None:
    # A writable canned query reads a form, or a JSON object when the body looks like one.
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return bad("The body is not UTF-8", code=BAD_BODY)
    if text.startswith("{") and text.endswith("}"):
        try:
            json.loads(text)
        except ValueError:
            return bad("The body looks like a JSON object but is not valid JSON", code=BAD_BODY)
    return None


def check_message(body: bytes) -> Malformed | None:
    try:
        fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return bad("The form is not UTF-8", code=BAD_BODY)
    message_type = fields.get("message_type") or "INFO"
    if message_type not in MESSAGE_TYPES:
        return bad(f"message_type is one of {', '.join(MESSAGE_TYPES)}, not {message_type!r}")
    return None


def check_allow_debug(request: Request) -> Malformed | None:
    # Invalid JSON is shown on the page; valid JSON of the wrong type raises (500).
    expected = {"actor": (dict, type(None)), "allow": (dict, bool, type(None))}
    for name, types in expected.items():
        try:
            value = json.loads(request.args.get(name) or "{}")
        except ValueError:
            continue
        if not isinstance(value, types):
            return bad(f"{name} must be a JSON object")
    return None


def checked(datasette, app):
    """ASGI middleware: a malformed request to a Datasette page gets its 4xx before Datasette runs,
    and every JSON error of a Datasette page its error_code."""

    async def asgi(scope, receive, send):
        if scope["type"] == "http" and scope["path"].endswith(".json"):
            send = ErrorCodes(send)
        route = resolve(datasette, scope) if scope["type"] == "http" else None
        if route is None:
            return await app(scope, receive, send)
        body = BufferedBody(receive)
        request = Request(scope, receive)
        problem = await malformed(datasette, request, route, body.read)
        if problem is None:
            if route.url_vars.get("format") == "csv" and request.method == "GET":
                send = EmptyCsvCheck(datasette, request, send)
            return await app(scope, body.receiver(), send)
        response = await error_page(datasette, request, problem.status, problem.message, problem.title)
        if problem.allow:
            response.headers["Allow"] = ", ".join(problem.allow)
        await with_error_code(response, problem.error_code).asgi_send(send)

    return asgi


def with_error_code(response: Response, code: str) -> Response:
    """Datasette's JSON error with its error_code; an HTML error page as it is."""
    if not response.content_type.startswith("application/json"):
        return response
    body = {**json.loads(response.body), "error_code": code}
    return Response(json.dumps(body), status=response.status, headers=response.headers, content_type=response.content_type)


def error_code_of(body: dict, status: int) -> str:
    """The code of a JSON error Datasette answered itself: a failed ?sql= or canned query says so
    in a page that has its `query`, a table's failed `_where` by its title; anything else (no such
    table, a 403, a 500) by its status."""
    if status == 400 and ("query" in body or body.get("title") == "Invalid SQL"):
        return QUERY_FAILED
    return code_for_status(status)


class ErrorCodes:
    """Wraps `send` for a .json answer. An error (status 400 or more) in JSON, small, is held whole
    and gets an `error_code` unless it has one; any other answer passes through as it is sent."""

    def __init__(self, send) -> None:
        self.send = send
        self.start: dict | None = None  # the held start of a JSON error
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            if message["status"] >= 400 and is_json(message.get("headers", [])):
                self.start = message
                return
            return await self.send(message)
        if self.start is None or message["type"] != "http.response.body":
            return await self.send(message)
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        raw = b"".join(self.chunks)
        body = coded_body(raw, self.start["status"])
        start = self.start
        if body != raw:  # (a HEAD's empty body is left as it was, with its headers)
            headers = [(k, v) for k, v in start.get("headers", []) if bytes(k).lower() != b"content-length"]
            start = {**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self.send(start)
        await self.send({"type": "http.response.body", "body": body})


def is_json(headers) -> bool:
    return any(
        bytes(name).lower() == b"content-type" and bytes(value).lower().startswith(b"application/json")
        for name, value in headers
    )


def coded_body(raw: bytes, status: int) -> bytes:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(body, dict) or "error_code" in body:
        return raw
    return json.dumps({**body, "error_code": error_code_of(body, status)}).encode()


class EmptyCsvCheck:
    """Wraps `send` for a CSV answer. A query that fails is answered by Datasette's CSV view with
    200 and an empty body (its JSON says 400 and why); a CSV that worked always starts with a header
    row. So the start of the answer is held until its first bytes of data: if the body ends with
    none, the client gets Datasette's 400 error page with the JSON answer's message instead."""

    def __init__(self, datasette, request: Request, send) -> None:
        self.datasette, self.request, self.send = datasette, request, send
        self.held: list[dict] | None = []  # None once the answer is known to be a real CSV

    async def __call__(self, message: dict) -> None:
        if self.held is None:
            return await self.send(message)
        self.held.append(message)
        if message["type"] != "http.response.body":
            return
        if self.held[0].get("status") != 200 or message.get("body", b"").strip():
            return await self.release()
        if not message.get("more_body", False):
            await self.refuse()

    async def release(self) -> None:
        held, self.held = self.held, None
        for message in held:
            await self.send(message)

    async def refuse(self) -> None:
        self.held = None
        path = self.request.path[: -len(".csv")] + ".json"
        query = f"?{self.request.query_string}" if self.request.query_string else ""
        answer = await self.datasette.client.get(path + query)
        try:
            message = answer.json().get("error") or "the query failed"
        except ValueError:
            message = "the query failed"
        response = await error_page(self.datasette, self.request, 400, message, "Invalid SQL")
        await response.asgi_send(self.send)


def interrupted(datasette, request, exception):
    """A query stopped by its time limit, found only afterwards: the CSV renderer lets it through
    (a 500), and the JSON view says it in HTML (a paragraph, the SQL in a textarea, a script) where a
    client reading JSON wants the words. Both get the same 400 in plain text."""
    as_csv = isinstance(exception, QueryInterrupted) and request.url_vars.get("format") == "csv"
    as_json = (
        isinstance(exception, DatasetteError) and exception.message_is_html
        and request.path.endswith(".json")
    )
    if as_csv or as_json:
        return interrupted_page(datasette, request)
    return None


async def interrupted_page(datasette, request) -> Response:
    response = await error_page(datasette, request, 400, INTERRUPTED, "SQL Interrupted")
    return with_error_code(response, QUERY_TIMEOUT)


class BufferedBody:
    """The request body, read only when a check asks for it, then replayed to Datasette."""

    def __init__(self, receive) -> None:
        self.receive, self.body = receive, None

    async def read(self) -> bytes:
        if self.body is None:
            self.body = await read_body(self.receive)
        return self.body

    def receiver(self):
        return self.receive if self.body is None else replay(self.body)


async def read_body(receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
