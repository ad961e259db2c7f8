"""Crawl progress an operator can read: `N/1000 books` every N books and every few seconds."""

from __future__ import annotations

import logging
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

from books_scraper import crawlstats

logger = logging.getLogger(__name__)


class ProgressLog:
    def __init__(self, stats: Any, every_books: int, every_seconds: float) -> None:
        self.stats = stats
        self.every_books = every_books
        self.every_seconds = every_seconds
        self.books = 0
        self.timer: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "ProgressLog":
        every_books = crawler.settings.getint("BOOKS_PROGRESS_EVERY_BOOKS")
        every_seconds = crawler.settings.getfloat("BOOKS_PROGRESS_EVERY_SECONDS")
        if every_books <= 0 and every_seconds <= 0:
            raise NotConfigured
        extension = cls(crawler.stats, every_books, every_seconds)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        # A timer as well as a count, so a stalled crawl still says where it is.
        if self.every_seconds > 0:
            self.timer = create_looping_call(self.log)
            self.timer.start(self.every_seconds, now=False)

    def item_scraped(self) -> None:
        self.books += 1
        if self.every_books > 0 and self.books % self.every_books == 0:
            self.log()

    def spider_closed(self) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        self.log()

    def log(self) -> None:
        expected = self.stats.get_value(crawlstats.BOOKS_EXPECTED)
        logger.info("Progress: %d/%s books", self.books, expected if expected else "?")
