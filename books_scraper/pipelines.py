"""Item pipelines, one job each: clean, validate, store (publication is books_scraper.publication)."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from itemadapter import ItemAdapter
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from sqlite_utils import Database

from books_scraper import crawlstats, storage
from books_scraper import signals as books_signals
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
    stats.inc_value(crawlstats.dropped(reason))
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
    """Writes records in batches to the staging database the Publication extension opened."""

    def __init__(self, stats: Any, batch_size: int = 200) -> None:
        self.stats = stats
        self.batch_size = batch_size
        self.buffer: list[dict[str, Any]] = []
        self.db: Database | None = None
        self.run_id: int | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "StorePipeline":
        pipeline = cls(crawler.stats, batch_size=crawler.settings.getint("BOOKS_WRITE_BATCH"))
        # The staging copy is made when the spider opens, after pipelines open: it comes by signal.
        crawler.signals.connect(pipeline.staging_opened, signal=books_signals.staging_opened)
        return pipeline

    def staging_opened(self, path: str, run_id: int) -> None:
        self.db = Database(path)
        # The staging file is thrown away on any failure, so durability waits until publication.
        self.db.execute("pragma synchronous = off")
        self.run_id = run_id

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
            self.count_unwritten(len(records), error)
            logger.exception("Could not store %d books", len(records))

    def save_one(self, record: dict[str, Any]) -> None:
        try:
            self.save([record])
        except sqlite3.IntegrityError:
            count_drop(self.stats, record.get("product_url"), "store conflict")
        except Exception as error:
            self.count_unwritten(1, error)
            logger.exception("Could not store %s", record.get("product_url"))

    def count_unwritten(self, books: int, error: Exception) -> None:
        self.stats.inc_value(crawlstats.BOOKS_UNWRITTEN, books)
        if self.stats.get_value(crawlstats.BOOKS_WRITE_ERROR) is None:  # the first, for the reason
            self.stats.set_value(crawlstats.BOOKS_WRITE_ERROR, str(error))

    def save(self, records: list[dict[str, Any]]) -> None:
        if self.db is None:
            raise RuntimeError("no staging database was opened")
        added = storage.save_books(self.db, records, run_id=self.run_id)
        self.stats.inc_value(crawlstats.BOOKS_STORED, len(records))
        self.stats.inc_value(crawlstats.BOOKS_PRICE_HISTORY_ADDED, added)

    def close_spider(self) -> None:
        if self.buffer:
            self.flush()
        if self.db is not None:
            self.db.close()
