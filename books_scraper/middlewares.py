"""Downloader middlewares: Scrapy's retries, waiting as long as the site asks."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.utils.asyncio import sleep

# The answers whose Retry-After says when the site will serve again (RFC 9110 section 10.2.3).
RETRY_AFTER_STATUSES = (429, 503)


class RetryAfterMiddleware(RetryMiddleware):
    """RetryMiddleware that waits, before a retry of a 429 or 503 answer, the seconds its
    Retry-After header asks for, at most BOOKS_RETRY_AFTER_MAX. Scrapy retries at once."""

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.max_wait = settings.getfloat("BOOKS_RETRY_AFTER_MAX")

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        retry = super().process_response(request, response)
        if isinstance(retry, Request) and response.status in RETRY_AFTER_STATUSES:
            wait = retry_after_seconds(response.headers.get(b"Retry-After"), self.max_wait)
            if wait > 0:
                await sleep(wait)
        return retry


def retry_after_seconds(value: bytes | None, at_most: float) -> float:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now, from 0 to `at_most`;
    0 where there is none or it cannot be read."""
    text = (value or b"").decode("latin-1").strip()
    if text.isdecimal():
        seconds = float(text)
    else:
        try:
            seconds = (parsedate_to_datetime(text) - datetime.now(timezone.utc)).total_seconds()
        except (TypeError, ValueError):
            return 0.0
    return min(max(seconds, 0.0), at_most)
