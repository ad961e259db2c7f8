"""The one error type every API layer raises; `web.error_response` turns it into the JSON envelope."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        headers: dict[str, str] | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.details = details


def bad_parameter(name: str, message: str) -> ApiError:
    return ApiError(400, message, "bad_parameter", parameter=name)


# Seconds a client waits before trying again a query the time limit stopped.
QUERY_RETRY_AFTER = 10


def query_interrupted(limit_ms: int) -> ApiError:
    """A query stopped at Datasette's SQL time limit: the server is fine, this answer was too costly
    now (503 with Retry-After, never a 500)."""
    return ApiError(
        503, f"the query took longer than the {limit_ms} ms time limit and was stopped; try again later, "
        "or narrow it (filters, a smaller limit, follow `next` rather than a large offset)",
        "query_timeout", headers={"Retry-After": str(QUERY_RETRY_AFTER)}, time_limit_ms=limit_ms,
    )
