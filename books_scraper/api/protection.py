"""Protection for /api/v1, as one ASGI middleware (plugins/api_protection.py registers it): rate limits
on the routes that cost a password check or a crawl, and CORS for browser pages on other origins.

Rate limits are keyed by method and path, so they need nothing from the views they guard. They use the
`limits` library's moving window in memory: a client never gets more than N requests into any span of
the window (a fixed window lets 2N through across its edge), and Retry-After is exactly when the
oldest counted request leaves it. Memory is per server process (and per Datasette instance).
"""

from __future__ import annotations

import json
import math
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import limits
from datasette.plugins import pm
from datasette.utils import await_me_maybe
from datasette.utils.asgi import Request

from books_scraper.api.config import api_config
from books_scraper.api.login import LOGIN_BODY_BYTES
from books_scraper.api.web import API_PREFIX

ASGIApp = Callable[[dict, Any, Callable[[dict], Awaitable[None]]], Awaitable[None]]

LOGIN = ("POST", "/api/v1/auth/login")
REFRESH = ("POST", "/api/v1/auth/refresh")
SCRAPING_JOBS = {("POST", "/api/v1/scraping/jobs"), ("POST", "/api/v1/scraping/trigger")}
# (method, path) -> its rate_limits key (login is also limited per username); openapi.py documents a 429 on each.
LIMITED = {LOGIN: "login_per_address", REFRESH: "refresh_per_address"} | {
    route: "scraping_jobs_per_actor" for route in SCRAPING_JOBS
}

# CORS: what a page on an allowed origin may send and read.
ALLOWED_HEADERS = "Authorization, Content-Type"
EXPOSED_HEADERS = "X-Request-Id, Retry-After, Location"
READ_ONLY = ("GET", "HEAD")  # all an origin allowed only by "*" may do
PREFLIGHT_MAX_AGE = "600"


def protection(datasette) -> Callable[[ASGIApp], ASGIApp]:
    """The middleware: CORS outside (429 answers carry its headers too), rate limits inside."""
    return lambda app: cors(datasette, rate_limited(datasette, app))


# --- rate limits -------------------------------------------------------------------------------------

# One limiter per Datasette instance (tests build many); made on the first limited request.
_limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def limiter(datasette) -> limits.strategies.MovingWindowRateLimiter:
    if datasette not in _limiters:
        _limiters[datasette] = limits.strategies.MovingWindowRateLimiter(limits.storage.MemoryStorage())
    return _limiters[datasette]


def client_address(scope: dict) -> str:
    """The ASGI client host: behind a proxy, the proxy's, unless the server is told to trust its
    forwarded headers (uvicorn --forwarded-allow-ips)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def over_limit(datasette, key: str, *identifiers: str) -> int | None:
    """Count one request against the limits configured under `key`: None while within them, else the
    seconds until one more would be allowed."""
    window = limiter(datasette)
    for item in api_config(datasette).rate_limits[key]:
        if not window.hit(item, key, *identifiers):
            reset = window.get_window_stats(item, key, *identifiers).reset_time
            return max(1, math.ceil(reset - time.time()))
    return None


async def too_many_requests(send: Callable[[dict], Awaitable[None]], retry_after: int, what: str) -> None:
    envelope = {
        "ok": False, "status": 429, "error": f"too many requests {what}; retry in {retry_after} s",
        "error_code": "rate_limited",
    }
    body = json.dumps(envelope).encode()
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(retry_after).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def buffered_body(receive, max_bytes: int) -> tuple[list[dict], bytes]:
    """The body's first messages, up to max_bytes (past that the view answers 413 on its own), and
    their bytes."""
    messages, body = [], b""
    while len(body) <= max_bytes:
        message = await receive()
        messages.append(message)
        body += message.get("body", b"")
        if message["type"] != "http.request" or not message.get("more_body", False):
            break
    return messages, body


def replay(messages: list[dict], receive):
    """A receive() that gives the buffered messages again, then whatever is left."""
    pending = list(messages)

    async def replayed() -> dict:
        return pending.pop(0) if pending else await receive()

    return replayed


def username_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    username = data.get("username") if isinstance(data, dict) else None
    return username if isinstance(username, str) else None


async def actor_key(datasette, scope: dict, receive) -> str:
    """The actor's id when the request authenticates, else the client address."""
    request = Request(scope, receive)
    try:
        # The same actor_from_request hooks Datasette runs for the view (it runs them again there).
        for actor in pm.hook.actor_from_request(datasette=datasette, request=request):
            actor = await await_me_maybe(actor)
            if actor and actor.get("id") is not None:
                return f"actor:{actor['id']}"
    except Exception:  # a credential no hook can read: the view refuses it; count it by address
        pass
    return f"address:{client_address(scope)}"


def rate_limited(datasette, app: ASGIApp) -> ASGIApp:
    async def limited(scope: dict, receive, send) -> None:
        route = (scope.get("method"), scope.get("path")) if scope["type"] == "http" else None
        key = LIMITED.get(route)
        if key is None:
            return await app(scope, receive, send)
        if route in SCRAPING_JOBS:
            who, what = await actor_key(datasette, scope, receive), "for crawl jobs"
        else:
            who, what = client_address(scope), "from this address"
        retry_after = over_limit(datasette, key, who)
        if retry_after is None and route == LOGIN:
            messages, body = await buffered_body(receive, LOGIN_BODY_BYTES)
            receive = replay(messages, receive)
            username = username_of(body)
            if username is not None:
                retry_after = over_limit(datasette, "login_per_username", username)
                what = "for this username"
        if retry_after is not None:
            return await too_many_requests(send, retry_after, what)
        await app(scope, receive, send)

    return limited


# --- CORS --------------------------------------------------------------------------------------------


def is_api_path(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def allowed_origin(origins: frozenset[str], origin: str, method: str) -> str | None:
    """The Access-Control-Allow-Origin value for this origin and method, None if not allowed.
    A listed origin may use every method; "*" covers other origins for reading only, and never with
    credentials (no Access-Control-Allow-Credentials is ever sent)."""
    if origin.lower() in origins:
        return origin
    if "*" in origins and method in READ_ONLY:
        return "*"
    return None


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def cors(datasette, app: ASGIApp) -> ASGIApp:
    async def with_cors(scope: dict, receive, send) -> None:
        if scope["type"] != "http" or not is_api_path(scope["path"]):
            return await app(scope, receive, send)
        origins = api_config(datasette).cors_origins
        if not origins:
            return await app(scope, receive, send)
        origin = header(scope, b"origin")
        requested = header(scope, b"access-control-request-method")
        preflight = scope["method"] == "OPTIONS" and requested is not None
        method = requested.strip().upper() if preflight else scope["method"]
        allow = allowed_origin(origins, origin, method) if origin else None

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers = vary_origin(headers)
                if allow is not None:
                    headers += cors_headers(allow, preflight, message["status"], headers)
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_cors)

    return with_cors


def vary_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The answer depends on the Origin header: say so to caches."""
    vary = [value for name, value in headers if name.lower() == b"vary"]
    if any(b"origin" in value.lower() for value in vary):
        return headers
    return [(n, v) for n, v in headers if n.lower() != b"vary"] + [(b"vary", b", ".join([*vary, b"Origin"]))]


def cors_headers(allow: str, preflight: bool, status: int, headers: list) -> list:
    cors = [(b"access-control-allow-origin", allow.encode("latin-1"))]
    if not preflight:
        return cors + [(b"access-control-expose-headers", EXPOSED_HEADERS.encode())]
    if status != 204:  # an unknown path or a refused preflight: nothing more to allow
        return cors
    if allow == "*":
        methods = ", ".join(READ_ONLY)
    else:
        methods = next((value.decode() for name, value in headers if name.lower() == b"allow"), "")
    return cors + [
        (b"access-control-allow-methods", methods.encode()),
        (b"access-control-allow-headers", ALLOWED_HEADERS.encode()),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE.encode()),
    ]
