"""What every answer of the publication gets, whatever view made it (a plain ASGI middleware, no
Datasette import): security headers, a cache lifetime for static files, and a 401 for an
Authorization header no token can match.

A header with bytes outside printable ASCII reached datasette-auth-tokens 0.3, whose
secrets.compare_digest raises TypeError on non-ASCII text: a 500 on every route. No valid Bearer
token (RFC 6750: ASCII letters, digits and -._~+/=) has such bytes, so it is refused up front.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

API_PREFIX = "/api/v1"

# Inline scripts and styles: Datasette's own pages use them. Vega compiles chart expressions with
# Function(), so the dashboards alone also need 'unsafe-eval'. Nothing loads from another origin.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'{eval}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
EVAL_PATHS = ("/-/dashboards",)


def security_headers(path: str) -> list[tuple[bytes, bytes]]:
    script_eval = " 'unsafe-eval'" if path.startswith(EVAL_PATHS) else ""
    return [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"strict-origin-when-cross-origin"),
        (b"content-security-policy", CSP.format(eval=script_eval).encode()),
    ]


SECURITY_HEADER_NAMES = {name for name, _ in security_headers("/")}

# Datasette serves its own and its plugins' files (the dashboards' ~1 MB of Vega) with no cache
# header, so a browser fetched them again on every page. They change only with an upgrade.
STATIC_PATHS = ("/-/static/", "/-/static-plugins/")
STATIC_CACHE = (b"cache-control", b"public, max-age=3600")


def static_cache(path: str, status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    if status != 200 or not path.startswith(STATIC_PATHS):
        return []
    return [] if any(name.lower() == b"cache-control" for name, _ in headers) else [STATIC_CACHE]


def malformed_authorization(headers: list[tuple[bytes, bytes]]) -> bool:
    """An Authorization header with a byte outside printable ASCII."""
    return any(
        name.lower() == b"authorization" and any(byte < 0x20 or byte > 0x7E for byte in value)
        for name, value in headers
    )


def wants_json(path: str) -> bool:
    return path == API_PREFIX or path.startswith(API_PREFIX + "/") or path.endswith(".json")


async def refuse_authorization(scope: dict, send: Callable[[dict], Awaitable[None]]) -> None:
    message = "the Authorization header is malformed: a token has printable ASCII characters only"
    if wants_json(scope["path"]):
        envelope = {"ok": False, "status": 401, "error": message, "error_code": "invalid_token"}
        body, content_type = json.dumps(envelope).encode(), b"application/json; charset=utf-8"
    else:
        body, content_type = (message + "\n").encode(), b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b'Bearer realm="books-api", error="invalid_token"'),
        *security_headers(scope["path"]),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})


def guard(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def guarded(scope: dict, receive: Any, send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if malformed_authorization(scope.get("headers") or []):
            return await refuse_authorization(scope, send)
        extra = security_headers(scope["path"])

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers") or [] if h[0].lower() not in SECURITY_HEADER_NAMES]
                cache = static_cache(scope["path"], message["status"], kept)
                message = {**message, "headers": kept + extra + cache}
            await send(message)

        await app(scope, receive, send_with_headers)

    return guarded
