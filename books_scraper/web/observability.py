"""What the server tells its operator about each request: one log line (books_scraper/logs.py's format)
and the request metrics (books_scraper/web/metrics.py), from one ASGI middleware; the request id
(X-Request-Id); the actor, carried out of Datasette's router through a context variable.

Never logged: headers (so no token), bodies (so no password), query strings.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from books_scraper.logs import configure_process_logging
from books_scraper.web.datasette_internals import matched_route

logger = logging.getLogger("books_scraper.requests")

REQUEST_ID_HEADER = b"x-request-id"
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ROUTE_FORMATS = frozenset({"json", "jsono", "csv", "db"})  # kept in a route label; any other is {format}
NOT_FOUND_ROUTE = "(not found)"  # every 404, whatever its path: the label set stays bounded
UNMATCHED_ROUTE = "(unmatched)"  # no route matched and not a 404 (a trailing-slash redirect ...)
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")


@dataclass
class RequestContext:
    request_id: str
    actor_id: str | None = None


_request: ContextVar[RequestContext | None] = ContextVar("books_request", default=None)


def note_actor(actor: Mapping[str, Any] | None) -> None:
    """Record the actor of the request being answered (its id only), once Datasette has resolved it."""
    context = _request.get()
    if context is not None and context.actor_id is None and isinstance(actor, Mapping) and actor.get("id"):
        context.actor_id = str(actor["id"])[:100]


def request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-Id when well-formed (1-64 of A-Za-z0-9._-), else a new one."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def route_label(datasette, scope: dict, status: int) -> str:
    """The route template (`/api/v1/books/{id}`, `/{database}/{table}.json`), never the raw path."""
    if status == 404:
        return NOT_FOUND_ROUTE
    match = matched_route(datasette, scope)
    if match is None:
        return UNMATCHED_ROUTE
    parts, position = [], 0
    named = sorted((match.span(name), name) for name, value in match.groupdict().items() if value is not None)
    for (start, end), name in named:
        parts.append(match.string[position:start])
        value = match.group(name)
        parts.append(value if name in ("format", "as_format") and value in ROUTE_FORMATS else "{" + name + "}")
        position = end
    parts.append(match.string[position:])
    return "".join(parts)


def observed(datasette, app: Callable[..., Awaitable[None]], metrics) -> Callable[..., Awaitable[None]]:
    """The middleware: request id in and out, then one log line and the metrics (metrics.Metrics) per
    request."""

    async def middleware(scope: dict, receive: Any, send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        context = RequestContext(request_id(scope.get("headers") or []))
        token = _request.set(context)
        started = time.perf_counter()
        answer = {"status": 500, "bytes": 0}

        async def send_observed(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                headers = [h for h in message.get("headers") or [] if h[0].lower() != REQUEST_ID_HEADER]
                message = {**message, "headers": [*headers, (REQUEST_ID_HEADER, context.request_id.encode())]}
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body") or b"")
            await send(message)

        try:
            await app(scope, receive, send_observed)
        finally:
            duration = time.perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = route_label(datasette, scope, answer["status"])
            metrics.observe_request(route, method, answer["status"], duration)
            log_request(context, method, route, scope["path"], answer["status"], duration, answer["bytes"])
            _request.reset(token)

    return middleware


def log_request(context: RequestContext, method: str, route: str, path: str, status: int,
                duration: float, size: int) -> None:
    duration_ms = round(duration * 1000, 1)
    logger.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "%s %s %s %.1fms %dB actor=%s id=%s", method, ascii(path)[1:-1], status, duration_ms, size,
        context.actor_id or "-", context.request_id,
        extra={
            "request_id": context.request_id, "method": method, "route": route, "path": path,
            "status": status, "duration_ms": duration_ms, "bytes": size, "actor_id": context.actor_id,
        },
    )


class RequestIdFilter(logging.Filter):
    """Every line logged while a request is answered carries its request_id."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _request.get()
        if context is not None and not hasattr(record, "request_id"):
            record.request_id = context.request_id
        return True


class ToRootHandlers(logging.Filter):
    """On uvicorn's loggers: their records go to the root handler, in this format, and not to the text
    handlers uvicorn's own logging config gives them. A logger filter, because `datasette serve` applies
    that config after the startup hooks and dictConfig keeps a logger's filters, not its handlers."""

    def filter(self, record: logging.LogRecord) -> bool:
        logging.getLogger().handle(record)
        return False


class Dropped(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def configure_logging(environ: Mapping[str, str] = os.environ) -> None:
    """The server's logging, from its startup hook: BOOKS_LOG_FORMAT (text or json) and BOOKS_LOG_LEVEL
    on the root handler; uvicorn's lines in the same format; uvicorn's access log off (the middleware's
    line replaces it)."""
    configure_process_logging(environ).addFilter(RequestIdFilter())
    for name in UVICORN_LOGGERS:
        _only_filter(logging.getLogger(name), ToRootHandlers())
    _only_filter(logging.getLogger("uvicorn.access"), Dropped())


def _only_filter(target: logging.Logger, new: logging.Filter) -> None:
    for old in list(target.filters):
        if isinstance(old, (ToRootHandlers, Dropped)):
            target.removeFilter(old)
    target.addFilter(new)
