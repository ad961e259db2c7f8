"""Scrapy's log lines, without building the per-item DEBUG line when DEBUG is not shown."""

from __future__ import annotations

import logging
from typing import Any

from scrapy.crawler import Crawler
from scrapy.logformatter import LogFormatter, LogFormatterResult


class BooksLogFormatter(LogFormatter):
    """Scrapy logs every scraped item at DEBUG ("Scraped from <200 ...>" and the whole record).

    Scrapy filters log levels in its log handler, not in its loggers, so below DEBUG each of those
    lines still builds a log record that is then thrown away: a few percent of a full crawl's CPU
    time (docs/benchmarks.md). The line is skipped unless LOG_LEVEL shows DEBUG.
    """

    def __init__(self, log_items: bool = True) -> None:
        self.log_items = log_items

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "BooksLogFormatter":
        settings = crawler.settings
        level = settings.get("LOG_LEVEL")
        if isinstance(level, str):
            level = logging.getLevelName(level.upper())
        shown = settings.getbool("LOG_ENABLED") and (not isinstance(level, int) or level <= logging.DEBUG)
        return cls(log_items=shown)

    def scraped(self, item: Any, response: Any, spider: Any) -> LogFormatterResult | None:
        return super().scraped(item, response, spider) if self.log_items else None
