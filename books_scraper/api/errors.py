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
