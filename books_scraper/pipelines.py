"""Item pipelines, one job each: clean, validate, store (and publish on a good finish)."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from itemadapter import ItemAdapter
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from books_scraper import operations, publish, storage
from books_scraper.cleaning import (
    clean_description,
    normalize_text,
    parse_availability,
    parse_int,
    parse_money,
    parse_rating,
)

logger = logging.getLogger(__name__)

TEXT_FIELDS = ("upc", "title", "availability", "category", "product_type")
MONEY_FIELDS = ("price", "price_incl_tax", "tax")


class CleanPipeline:
    """Turns the page's text into typed values: money, rating, stock, normalised text."""

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        for name in TEXT_FIELDS:
            adapter[name] = normalize_text(adapter.get(name))
        adapter["description"] = clean_description(adapter.get("description"))
        for name in MONEY_FIELDS:
            adapter[name] = parse_money(adapter.get(name))
        adapter["rating"] = parse_rating(adapter.get("rating"))
        adapter["number_of_reviews"] = parse_int(adapter.get("number_of_reviews"))
        adapter["in_stock"], adapter["stock_count"] = parse_availability(adapter.get("availability"))
        return item


class ValidatePipeline:
    """Drops records that would publish half-parsed, counting drops per reason in the stats."""

    REQUIRED = ("id", "upc", "title", "price", "rating", "category", "category_url", "product_url")

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.upc_owners: dict[str, int] = {}  # a UPC names one book within a crawl

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "ValidatePipeline":
        return cls(crawler.stats)

    def process_item(self, item: Any) -> Any:
        adapter = ItemAdapter(item)
        reason = problem(adapter)
        if reason is None and self.upc_owners.setdefault(adapter["upc"], adapter["id"]) != adapter["id"]:
            reason = "duplicate upc"
        if reason:
            count_drop(self.stats, adapter.get("product_url"), reason)
            raise DropItem(reason)
        return item


def count_drop(stats: Any, url: str | None, reason: str) -> None:
    """Log and count a record that will not be published (crawl_runs.drops reads these stats)."""
    stats.inc_value(f"books/dropped/{reason}")
    logger.warning("Dropped %s: %s", url, reason)


def problem(adapter: ItemAdapter) -> str | None:
    """The first thing wrong with a cleaned record, as a short reason, or None."""
    for name in ValidatePipeline.REQUIRED:
        if adapter.get(name) in (None, ""):
            return f"missing {name}"
    if adapter["price"] < 0:
        return "negative price"
    if not 1 <= adapter["rating"] <= 5:
        return "rating out of range"
    if storage.category_from_url(adapter["category"], adapter["category_url"]) is None:
        return "bad category url"
    return None


class StorePipeline:
    """Writes records to a staging copy of the database; publishes it when the crawl ends well."""

    def __init__(
        self,
        db_path: str,
        ops_db_path: str,
        start_url: str,
        stats: Any,
        allow_shrink: bool = False,
        batch_size: int = 200,
    ) -> None:
        self.published = Path(db_path)
        self.ops_db_path = ops_db_path
        self.start_url = start_url
        self.stats = stats
        self.allow_shrink = allow_shrink
        self.batch_size = batch_size
        self.buffer: list[dict[str, Any]] = []
        self.resources = ExitStack()
        self.stored = 0
        self.write_errors = 0
        self.first_write_error: str | None = None  # for the one-line reason

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "StorePipeline":
        settings = crawler.settings
        pipeline = cls(
            db_path=settings.get("BOOKS_DB_PATH"),
            ops_db_path=settings.get("BOOKS_OPS_DB_PATH"),
            start_url=settings.get("BOOKS_START_URL"),
            stats=crawler.stats,
            allow_shrink=settings.getbool("BOOKS_ALLOW_SHRINK"),
            batch_size=settings.getint("BOOKS_WRITE_BATCH"),
        )
        # Publication needs the close reason, which only the spider_closed signal carries.
        crawler.signals.connect(pipeline.spider_closed, signal=signals.spider_closed)
        return pipeline

    def open_spider(self) -> None:
        self.stats.set_value("publish/status", "pending")
        try:
            self.resources.enter_context(publish.crawl_lock(self.published))
        except publish.CrawlLocked as error:
            self.stats.set_value("publish/reason", str(error))
            raise
        self.ops = operations.open_operations_db(self.ops_db_path)
        self.resources.callback(self.ops.close)
        self.run_id = operations.start_run(self.ops, self.start_url)
        try:
            self.staging = publish.prepare_staging(self.published)
            self.db = storage.open_books_db(str(self.staging))
        except Exception as error:  # disk full, permissions: record it and leave nothing behind
            self.fail_to_start(f"could not stage {self.published}: {error}")
            raise
        # The staging file is thrown away on any failure, so durability waits until publication.
        self.db.execute("pragma synchronous = off")
        self.stats.set_value("books/run_id", self.run_id)

    def process_item(self, item: Any) -> Any:
        self.buffer.append(dict(ItemAdapter(item).items()))  # flat record: no recursive asdict()
        if len(self.buffer) >= self.batch_size:
            self.flush()
        return item

    def flush(self) -> None:
        records, self.buffer = self.buffer, []
        try:
            self.save(records)
        except sqlite3.IntegrityError:
            # One record clashes with the database (a UPC another book already has): keep the rest.
            for record in records:
                self.save_one(record)
        except Exception as error:
            self.count_write_errors(len(records), error)
            logger.exception("Could not store %d books", len(records))

    def save_one(self, record: dict[str, Any]) -> None:
        try:
            self.save([record])
        except sqlite3.IntegrityError:
            count_drop(self.stats, record.get("product_url"), "store conflict")
        except Exception as error:
            self.count_write_errors(1, error)
            logger.exception("Could not store %s", record.get("product_url"))

    def count_write_errors(self, books: int, error: Exception) -> None:
        self.write_errors += books
        self.first_write_error = self.first_write_error or str(error)

    def save(self, records: list[dict[str, Any]]) -> None:
        added = storage.save_books(self.db, records, run_id=self.run_id)
        self.stored += len(records)
        self.stats.inc_value("books/stored", len(records))
        self.stats.inc_value("books/price_history_added", added)

    def close_spider(self) -> None:
        self.flush()

    def spider_closed(self, spider: Any, reason: str) -> None:
        if not hasattr(self, "db"):
            return  # open_spider failed, there is nothing to publish
        try:
            problem = self.publication_problem(reason)
            run = self.run_record(reason, "failed" if problem else "published", problem)
            if problem:
                self.fail(problem, run)
            else:
                try:
                    run["removed"] = self.retire_unlisted_books(spider)
                    self.publish(run)
                except Exception as error:  # disk full, permissions: still record and report it
                    logger.exception("Publication failed")
                    self.fail(f"publication failed: {error}", run)
        finally:
            self.resources.close()

    def publication_problem(self, reason: str) -> str | None:
        if self.write_errors:
            return f"{self.write_errors} books could not be written ({self.first_write_error})"
        return publish.sanity_problem(
            reason,
            self.stored,
            publish.published_book_count(self.published),
            self.allow_shrink,
        )

    def run_record(self, reason: str, status: str, message: str | None) -> dict[str, Any]:
        stats = self.stats.get_stats()
        prefix = "books/dropped/"
        drops = {k[len(prefix) :]: v for k, v in stats.items() if k.startswith(prefix)}
        return {
            "id": self.run_id,
            "started_at": stats["start_time"].isoformat(timespec="seconds"),
            "finished_at": storage.utc_now(),
            "status": status,
            "start_url": self.start_url,
            "pages": stats.get("response_received_count", 0),
            "books": self.stored,
            "dropped": sum(drops.values()),
            "drops": drops,
            "errors": stats.get("pages/failed", 0) + self.write_errors,
            "finish_reason": reason,
            "message": message,
        }

    def retire_unlisted_books(self, spider: Any) -> int:
        """Remove the books the site no longer lists or whose page is gone (404/410).

        Only after a complete walk of the listing pages: a listing page that failed would make
        every book on it look gone. Books whose page failed otherwise keep their last good row.
        """
        listed = getattr(spider, "listed_book_ids", None)
        if listed is None:
            return 0
        if spider.listing_failures:
            logger.warning("Listing pages failed: no book is retired in this run")
            return 0
        removed = storage.remove_books_except(self.db, listed - spider.gone_book_ids)
        self.stats.set_value("books/removed", removed)
        if removed:
            logger.info("Retired %d books the site no longer has", removed)
        return removed

    def publish(self, run: dict[str, Any]) -> None:
        with self.db.conn:
            storage.save_crawl_run(self.db, run)
        storage.ensure_db_shape(self.db)
        self.db.execute("pragma journal_mode = delete")
        self.db.close()
        publish.replace_atomically(self.staging, self.published)
        operations.record_run(self.ops, run)
        self.stats.set_value("publish/status", "published")
        logger.info("Published %d books to %s (run %d)", self.stored, self.published, self.run_id)

    def fail_to_start(self, problem: str) -> None:
        publish.staging_path(self.published).unlink(missing_ok=True)
        with self.ops.conn:  # the run's row as start_run() wrote it, now failed
            self.ops[storage.CRAWL_RUNS].update(
                self.run_id, {"finished_at": storage.utc_now(), "status": "failed", "message": problem}
            )
        self.stats.set_value("publish/status", "failed")
        self.stats.set_value("publish/reason", problem)
        logger.error("Not published, %s left untouched: %s", self.published, problem)
        self.resources.close()

    def fail(self, problem: str, run: dict[str, Any]) -> None:
        self.db.close()
        self.staging.unlink(missing_ok=True)
        run = {**run, "status": "failed", "message": problem, "removed": None}
        operations.record_run(self.ops, run)
        self.stats.set_value("publish/status", "failed")
        self.stats.set_value("publish/reason", problem)
        logger.error("Not published, %s left untouched: %s", self.published, problem)
