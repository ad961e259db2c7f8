"""The crawl stats that carry messages between modules, each key named here once.

The spider, the pipelines and the extensions write and read them through `crawler.stats`; Scrapy
logs them all when the crawl ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BOOKS_EXPECTED = "books/expected"  # the "N results" of the first listing page
BOOKS_STORED = "books/stored"
BOOKS_PRICE_HISTORY_ADDED = "books/price_history_added"
BOOKS_UNWRITTEN = "books/unwritten"  # records the store could not write
BOOKS_WRITE_ERROR = "books/write_error"  # the first reason one could not be written
BOOKS_REMOVED = "books/removed"  # books retired at publication
BOOKS_RUN_ID = "books/run_id"
PAGES_LISTING = "pages/listing"
PAGES_PRODUCT = "pages/product"
PAGES_FAILED = "pages/failed"
PAGES_LISTING_FAILED = "pages/listing_failed"  # a failed listing page: no book is retired
PUBLISH_STATUS = "publish/status"  # pending, published, failed or cancelled
PUBLISH_REASON = "publish/reason"  # why not published, in one line

PUBLISHED = "published"
FAILED = "failed"
CANCELLED = "cancelled"  # stopped by a signal: nothing published, no fault

DROPPED_PREFIX = "books/dropped/"
FAILED_PREFIX = "pages/failed/"


def dropped(reason: str) -> str:
    """The key counting records dropped for `reason`."""
    return DROPPED_PREFIX + reason


def failed(reason: str) -> str:
    """The key counting pages that failed for `reason`."""
    return FAILED_PREFIX + reason


def by_reason(stats: Mapping[str, Any], prefix: str) -> dict[str, int]:
    """{reason: count} of the keys under `prefix` (DROPPED_PREFIX or FAILED_PREFIX)."""
    return {key[len(prefix) :]: value for key, value in stats.items() if key.startswith(prefix)}
