"""Crawl progress an operator can read: `N/1000 books` every few seconds or every N books."""

from __future__ import annotations

import logging
import time
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

logger = logging.getLogger(__name__)


class ProgressLog:
    def __init__(self, stats: Any, every_books: int, every_seconds: float) -> None:
        self.stats = stats
        self.every_books = every_books
        self.every_seconds = every_seconds
        self.books = 0
        self.last_logged = time.monotonic()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "ProgressLog":
        every_books = crawler.settings.getint("BOOKS_PROGRESS_EVERY_BOOKS")
        every_seconds = crawler.settings.getfloat("BOOKS_PROGRESS_EVERY_SECONDS")
        if every_books <= 0 and every_seconds <= 0:
            raise NotConfigured
        extension = cls(crawler.stats, every_books, every_seconds)
        crawler.signals.connect(extension.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def item_scraped(self) -> None:
        self.books += 1
        now = time.monotonic()
        due_by_count = self.every_books > 0 and self.books % self.every_books == 0
        due_by_time = self.every_seconds > 0 and now - self.last_logged >= self.every_seconds
        if due_by_count or due_by_time:
            self.last_logged = now
            self.log()

    def spider_closed(self) -> None:
        self.log()

    def log(self) -> None:
        expected = self.stats.get_value("books/expected")
        logger.info("Progress: %d/%s books", self.books, expected if expected else "?")
