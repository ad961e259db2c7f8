"""Publication of the crawl, an extension on signals like Scrapy's feed exports.

When the spider opens: the crawl lock, a journal entry, the staging copy of the published database
(handed to the store pipeline with the `staging_opened` signal). When it closes: the sanity checks,
the retirement of books the site no longer has, the atomic swap and the journal, or a failed run
that leaves the published file untouched; a crawl stopped by a signal (Ctrl-C, SIGTERM) is
journalled as `cancelled`, not `failed`. `publish/status` and `publish/reason` in the crawl stats
say whether it published, for `scrapy crawl` to set its exit status.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from sqlite_utils import Database

from books_scraper import crawlstats, operations, publish, storage
from books_scraper import signals as books_signals

logger = logging.getLogger(__name__)

# Scrapy's finish reason when a signal stopped the crawl: an operator's Ctrl-C (SIGINT) or a SIGTERM
# (a scraping job's cancel sends one, books_scraper/jobs.py).
SHUTDOWN = "shutdown"
STOPPED = (
    "stopped by a signal (Ctrl-C or SIGTERM) before it finished; the published database was left as it was"
)


class Publication:
    def __init__(
        self,
        crawler: Crawler,
        db_path: str,
        ops_db_path: str,
        start_url: str,
        allow_shrink: bool = False,
    ) -> None:
        self.crawler = crawler
        self.stats = crawler.stats
        self.published = Path(db_path)
        self.ops_db_path = ops_db_path
        self.start_url = start_url
        self.allow_shrink = allow_shrink
        self.resources = ExitStack()
        self.staging: Path | None = None  # set once the staging copy is ready
        self.listed: set[int] = set()
        self.gone: set[int] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "Publication":
        settings = crawler.settings
        extension = cls(
            crawler,
            db_path=settings.get("BOOKS_DB_PATH"),
            ops_db_path=settings.get("BOOKS_OPS_DB_PATH"),
            start_url=settings.get("BOOKS_START_URL"),
            allow_shrink=settings.getbool("BOOKS_ALLOW_SHRINK"),
        )
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.books_listed, signal=books_signals.books_listed)
        crawler.signals.connect(extension.book_gone, signal=books_signals.book_gone)
        return extension

    # --- The spider opens: lock, journal, staging ---------------------------------------------

    def spider_opened(self) -> None:
        self.stats.set_value(crawlstats.PUBLISH_STATUS, "pending")
        try:
            self.resources.enter_context(publish.crawl_lock(self.published))
        except publish.CrawlLocked as error:
            raise self.refuse_to_start(str(error)) from None  # the run is the other crawl's to record
        try:
            self.ops = operations.open_operations_db(self.ops_db_path)
            self.resources.callback(self.ops.close)
            self.run_id = operations.start_run(self.ops, self.start_url)
        except Exception as error:
            problem = f"could not open the journal {self.ops_db_path}: {error}"
            raise self.refuse_to_start(problem) from None
        self.stats.set_value(crawlstats.BOOKS_RUN_ID, self.run_id)
        try:
            staging = publish.prepare_staging(self.published)
            prepare_staging_db(staging)
        except Exception as error:  # disk full, permissions: record it and leave nothing behind
            problem = f"could not stage {self.published}: {error}"
            publish.staging_path(self.published).unlink(missing_ok=True)
            operations.fail_run(self.ops, self.run_id, problem)
            raise self.refuse_to_start(problem) from None
        self.staging = staging
        self.crawler.signals.send_catch_log(
            books_signals.staging_opened, path=str(staging), run_id=self.run_id
        )

    def refuse_to_start(self, problem: str) -> CloseSpider:
        """Report why nothing will be published; raised, the CloseSpider stops the crawl before
        its first request."""
        self.report_failure(problem)
        self.resources.close()
        return CloseSpider(problem)

    # --- What the spider learns about the catalogue -------------------------------------------

    def books_listed(self, book_ids: set[int]) -> None:
        self.listed.update(book_ids)

    def book_gone(self, book_id: int) -> None:
        self.gone.add(book_id)

    # --- The spider closes (after the store pipeline wrote its last books) ----------------------

    def spider_closed(self, reason: str) -> None:
        if self.staging is None:
            return  # spider_opened failed: recorded there, nothing to publish
        try:
            if reason == SHUTDOWN:  # stopped on purpose, not broken: nothing to check or publish
                self.fail(STOPPED, self.run_record(reason, STOPPED), status=operations.RUN_CANCELLED)
                return
            problem = self.publication_problem(reason)
            run = self.run_record(reason, problem)
            if problem:
                self.fail(problem, run)
            else:
                try:
                    self.publish(run)
                except Exception as error:  # disk full, permissions: still record and report it
                    logger.exception("Publication failed")
                    self.fail(f"publication failed: {error}", run)
        finally:
            self.resources.close()

    def publication_problem(self, reason: str) -> str | None:
        unwritten = self.stats.get_value(crawlstats.BOOKS_UNWRITTEN, 0)
        if unwritten:
            error = self.stats.get_value(crawlstats.BOOKS_WRITE_ERROR)
            return f"{unwritten} books could not be written ({error})"
        problem = publish.sanity_problem(
            reason,
            self.stats.get_value(crawlstats.BOOKS_STORED, 0),
            publish.published_book_count(self.published),
            self.allow_shrink,
        )
        failures = crawlstats.by_reason(self.stats.get_stats(), crawlstats.FAILED_PREFIX)
        if problem == publish.NO_BOOKS and failures:
            return no_books_reason(failures)
        return problem

    def run_record(self, reason: str, problem: str | None) -> dict[str, Any]:
        stats = self.stats.get_stats()
        drops = crawlstats.by_reason(stats, crawlstats.DROPPED_PREFIX)
        return {
            "id": self.run_id,
            "started_at": stats["start_time"].isoformat(timespec="seconds"),
            "finished_at": storage.utc_now(),
            "status": crawlstats.FAILED if problem else crawlstats.PUBLISHED,
            "start_url": self.start_url,
            "pages": stats.get("response_received_count", 0),
            "books": stats.get(crawlstats.BOOKS_STORED, 0),
            "dropped": sum(drops.values()),
            "drops": drops,
            "errors": stats.get(crawlstats.PAGES_FAILED, 0) + stats.get(crawlstats.BOOKS_UNWRITTEN, 0),
            "failures": crawlstats.by_reason(stats, crawlstats.FAILED_PREFIX),
            "finish_reason": reason,
            "message": problem,
        }

    def publish(self, run: dict[str, Any]) -> None:
        assert self.staging is not None
        db = Database(self.staging)
        # The staging file is made durable whole before the swap (publish.replace_atomically), so its
        # own transactions need not each be fsynced.
        db.execute("pragma synchronous = off")
        try:
            run["removed"] = self.retire_unlisted_books(db)
            with db.conn:
                storage.save_crawl_run(db, run)
            storage.ensure_db_shape(db)
            db.execute("pragma journal_mode = delete")
        finally:
            db.close()
        publish.replace_atomically(self.staging, self.published)
        operations.record_run(self.ops, run)
        self.stats.set_value(crawlstats.PUBLISH_STATUS, crawlstats.PUBLISHED)
        logger.info("Published %d books to %s (run %d)", run["books"], self.published, self.run_id)

    def retire_unlisted_books(self, db: Database) -> int:
        """Remove the books the site no longer lists or whose page is gone (404/410).

        Only after a complete walk of the listing pages: a listing page that failed would make
        every book on it look gone. Books whose page failed otherwise keep their last good row.
        """
        if not self.listed:
            return 0  # no listing page was read: nothing to judge by
        if self.stats.get_value(crawlstats.PAGES_LISTING_FAILED):
            logger.warning("Listing pages failed: no book is retired in this run")
            return 0
        removed = storage.remove_books_except(db, self.listed - self.gone)
        self.stats.set_value(crawlstats.BOOKS_REMOVED, removed)
        if removed:
            logger.info("Retired %d books the site no longer has", removed)
        return removed

    def fail(self, problem: str, run: dict[str, Any], status: str = crawlstats.FAILED) -> None:
        """Throw the staging copy away and journal the run as `status` (failed, or cancelled)."""
        assert self.staging is not None
        self.staging.unlink(missing_ok=True)
        run = {**run, "status": status, "message": problem, "removed": None}
        operations.record_run(self.ops, run)
        # A stop the operator asked for is no error.
        self.report_failure(problem, status, logging.ERROR if status == crawlstats.FAILED else logging.WARNING)

    def report_failure(self, problem: str, status: str = crawlstats.FAILED, level: int = logging.ERROR) -> None:
        self.stats.set_value(crawlstats.PUBLISH_STATUS, status)
        self.stats.set_value(crawlstats.PUBLISH_REASON, problem)
        logger.log(level, "Not published, %s left untouched: %s", self.published, problem)


def prepare_staging_db(staging: Path) -> None:
    """The staging copy's schema brought up to date and its full-text index left for publication.
    Its migrations' transactions are not fsynced one by one: the file is thrown away on failure
    and made durable whole before the swap (publish.replace_atomically)."""
    db = Database(staging)
    try:
        db.execute("pragma synchronous = off")
        storage.prepare_staging_db(db)
    finally:
        db.close()


def no_books_reason(failures: dict[str, int]) -> str:
    """Why a crawl found no books, when pages failed: the causes and what to do, in one line
    ('crawl scraped no books: 1 page failed (connection refused: 1); check ...')."""
    pages = sum(failures.values())
    causes = ", ".join(
        f"{reason}: {count}" for reason, count in sorted(failures.items(), key=lambda item: -item[1])
    )
    return (
        f"{publish.NO_BOOKS}: {pages} page{'s' if pages != 1 else ''} failed ({causes}); check the network and "
        "the site, or set BOOKS_START_URL to a local copy of the site (README: Crawling a local copy)"
    )
