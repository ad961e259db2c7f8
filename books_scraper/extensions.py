"""Crawl progress an operator can read: `N/1000 books` in the log every N books and every few
seconds (ProgressLog) and, when the crawl runs as a scraping job, in the job's row of the operations
database (JobReport)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider, NotConfigured
from scrapy.utils.asyncio import create_looping_call
from sqlite_utils import Database

from books_scraper import crawlstats, operations, publish
from books_scraper.jobs import JOB_SETTING
from books_scraper.publication import SHUTDOWN

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


class JobReport:
    """The job's state, written by the crawl itself (so it outlives the server that started it):
    running and its pid when the spider opens, progress every few seconds, the outcome at the end.

    Enabled by `-s BOOKS_JOB_ID=<id>` (books_scraper/jobs.py); listed after Publication in
    EXTENSIONS so its spider_closed reads the publication's outcome.
    """

    def __init__(
        self, crawler: Crawler, job_id: int, books_db_path: str, ops_db_path: str, every_seconds: float
    ) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.job_id = job_id
        self.books_db_path = books_db_path
        self.ops_db_path = ops_db_path
        self.every_seconds = every_seconds
        self.books = 0
        self.db: Database | None = None
        self.timer: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "JobReport":
        job_id = crawler.settings.getint(JOB_SETTING)
        if job_id <= 0:
            raise NotConfigured  # an operator's crawl, not a job
        extension = cls(
            crawler, job_id, crawler.settings.get("BOOKS_DB_PATH"), crawler.settings.get("BOOKS_OPS_DB_PATH"),
            crawler.settings.getfloat("BOOKS_JOB_REPORT_SECONDS"),
        )
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        self.db = operations.open_operations_db(self.ops_db_path)
        start_url = self.crawler.settings.get("BOOKS_START_URL")
        operations.job_started(self.db, self.job_id, os.getpid(), start_url)
        if self.cancel_requested():  # asked before this process could be signalled
            raise CloseSpider("cancelled")
        self.timer = create_looping_call(self.report)
        self.timer.start(self.every_seconds, now=False)

    def item_scraped(self) -> None:
        self.books += 1

    def cancel_requested(self) -> bool:
        assert self.db is not None
        job = self.db[operations.SCRAPE_JOBS].get(self.job_id)
        return bool(job["cancel_requested"])

    def progress(self) -> dict[str, Any]:
        stats = self.stats.get_stats()
        return {
            "books": self.books,
            "expected": stats.get(crawlstats.BOOKS_EXPECTED),
            "pages": stats.get("response_received_count", 0),
            "failed_pages": crawlstats.by_reason(stats, crawlstats.FAILED_PREFIX),
            "drops": crawlstats.by_reason(stats, crawlstats.DROPPED_PREFIX),
        }

    def report(self) -> None:
        try:
            assert self.db is not None
            run_id = self.stats.get_value(crawlstats.BOOKS_RUN_ID)
            operations.job_progress(self.db, self.job_id, self.progress(), run_id)
        except Exception as error:  # a busy database: the next report catches up
            logger.warning("Could not report the job's progress: %s", error)

    def spider_closed(self, reason: str) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        if self.db is None:
            return
        published = self.stats.get_value(crawlstats.PUBLISH_STATUS) == crawlstats.PUBLISHED
        problem = self.stats.get_value(crawlstats.PUBLISH_REASON)
        status = operations.job_ended(
            self.db, self.job_id,
            published=published,
            books=publish.published_book_count(Path(self.books_db_path)) if published else None,
            reason=problem or f"the crawl ended without publishing (reason: {reason})",
            progress=self.progress(),
            crawl_run_id=self.stats.get_value(crawlstats.BOOKS_RUN_ID),
            stopped=reason == SHUTDOWN,
        )
        logger.info("Scrape job %d %s", self.job_id, status)
        self.db.close()
