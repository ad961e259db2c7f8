"""The books database: schema, migrations and save_* functions (no Scrapy import).

Fetching lives in the spider; this module only knows rows and SQLite, so the crawler, the tests and the
Datasette plugins share one definition of every table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from urllib.parse import urlparse

from sqlite_utils import Database, Migrations
from sqlite_utils.db import DescIndex

from books_scraper import aggregates
from books_scraper.title_search import ensure_title_index

BOOKS = "books"
CATEGORIES = "categories"
CRAWL_RUNS = "crawl_runs"
PRICE_HISTORY = "price_history"

# The books table's columns after every migration, in order: the API selects exactly these
# (a test compares them with a crawled database), so a new column needs a migration and a name here.
BOOK_COLUMNS: tuple[str, ...] = (
    "id", "upc", "title", "price", "price_incl_tax", "tax", "currency", "rating", "availability",
    "in_stock", "stock_count", "category_id", "description", "product_type", "number_of_reviews",
    "image_url", "product_url", "scraped_at",
)

# crawl_runs, in both databases: the books database keeps the runs that built it, the operations
# database every attempt. Its columns as first created; the steps below add the later ones.
CRAWL_RUN_COLUMNS: dict[str, type] = {
    "id": int,
    "started_at": str,
    "finished_at": str,
    "status": str,  # running | published | failed | cancelled | abandoned
    "start_url": str,
    "pages": int,
    "books": int,
    "dropped": int,
    "drops": str,  # JSON object: reason -> records dropped
    "errors": int,
    "finish_reason": str,
    "message": str,
}

# Columns people filter and sort on; FTS covers the text ones. (category_id, price, title) finds the
# cheapest book of a category with one index lookup (cheapest_book_per_category); the two by rating
# (best first) then price and title give books_rated_at_least its order, with and without a category,
# so it reads the first rows of an index instead of sorting every book. The last, by id, holds every
# column the API filters and sorts on: a book found by its id (a full-text match) is tested in a
# narrow entry instead of its wide row (api/books.py, NARROW_INDEX).
BOOK_INDEXES = [
    ["price"], ["rating"], ["category_id"], ["in_stock"], ["title"],
    ["category_id", "price", "title"],
    [DescIndex("rating"), "price", "title"],
    ["category_id", DescIndex("rating"), "price", "title"],
    ["id", "category_id", "rating", "price", "in_stock", "title"],
]
FTS_COLUMNS = ["title", "description"]


# The crawl_runs schema, defined once: each database's migrations apply these steps in this order.
def create_crawl_runs(db: Database) -> None:
    db[CRAWL_RUNS].create(CRAWL_RUN_COLUMNS, pk="id", not_null={"started_at", "status"})


def add_crawl_runs_removed(db: Database) -> None:
    db[CRAWL_RUNS].add_column("removed", int)  # books retired because the site dropped them


def add_crawl_runs_failures(db: Database) -> None:
    db[CRAWL_RUNS].add_column("failures", str)  # JSON object: reason -> pages that failed


migrations = Migrations("books_scraper")


@migrations()
def m001_initial(db: Database) -> None:
    db[CATEGORIES].create(
        {"id": int, "name": str, "slug": str, "url": str}, pk="id", not_null={"name"}
    )
    create_crawl_runs(db)
    db[BOOKS].create(
        {
            "id": int,
            "upc": str,
            "title": str,
            "price": float,
            "price_incl_tax": float,
            "tax": float,
            "currency": str,
            "rating": int,
            "availability": str,
            "in_stock": int,
            "stock_count": int,
            "category_id": int,
            "description": str,
            "product_type": str,
            "number_of_reviews": int,
            "image_url": str,
            "product_url": str,
            "scraped_at": str,
        },
        pk="id",
        not_null={"upc", "title", "price", "rating", "category_id", "product_url"},
        foreign_keys=[("category_id", CATEGORIES, "id")],
    )
    db[BOOKS].create_index(["upc"], unique=True)
    db[PRICE_HISTORY].create(
        {
            "id": int,
            "book_id": int,
            "run_id": int,
            "price": float,
            "stock_count": int,
            "observed_at": str,
        },
        pk="id",
        not_null={"book_id", "price", "observed_at"},
        foreign_keys=[("book_id", BOOKS, "id"), ("run_id", CRAWL_RUNS, "id")],
    )
    db[PRICE_HISTORY].create_index(["book_id", "observed_at"])


migrations(name="m002_crawl_runs_removed")(add_crawl_runs_removed)
migrations(name="m003_crawl_runs_failures")(add_crawl_runs_failures)


@migrations()
def m004_price_history_previous(db: Database) -> None:
    """Each history row carries the book's previous observation, so a price change is one row to
    read, not a window over the whole table; existing rows are filled once, here."""
    db[PRICE_HISTORY].add_column("previous_price", float)
    db[PRICE_HISTORY].add_column("previous_run_id", int)
    db.execute(
        f"""update {PRICE_HISTORY} set previous_price = seen.previous_price,
          previous_run_id = seen.previous_run_id
        from (
          select id, lag(price) over book as previous_price, lag(run_id) over book as previous_run_id
          from {PRICE_HISTORY} window book as (partition by book_id order by observed_at, id)
        ) as seen
        where seen.id = {PRICE_HISTORY}.id"""
    )


def open_books_db(path: str) -> Database:
    """Open (creating if needed) a books database and bring its schema up to date."""
    db = Database(path)
    migrations.apply(db)
    return db


def prepare_staging_db(db: Database) -> None:
    """Ready a crawl's staging copy for its writes: the schema brought up to date, and the derived
    search structures dropped (the full-text index with its triggers, the BOOK_INDEXES and the
    aggregates' search-order indexes), for ensure_db_shape to build once at publication.

    Kept row by row, a re-crawl's upserts would tokenize every book twice (the old text out of the
    full-text index, the new in) and rewrite each of its index entries: at 100k books that costs
    2.3 times the store and the rebuild together (docs/benchmarks.md, "Where the extra time goes").
    The primary key and the unique UPC stay: the upserts need them.
    """
    migrations.apply(db)
    if db[BOOKS].detect_fts():
        db[BOOKS].disable_fts()
    derived = [[str(column) for column in columns] for columns in BOOK_INDEXES]
    searched = {aggregates.search_order_index(column) for column in aggregates.SEARCH_ORDERS}
    for index in db[BOOKS].indexes:
        if index.name in searched or not (index.unique or index.partial) and index.columns in derived:
            db[BOOKS].drop_index(index.name)


# The price changes (price_changes query), newest first: a small partial index, whatever the history's size.
PRICE_CHANGES_INDEX = (
    f"create index if not exists {PRICE_HISTORY}_changes on {PRICE_HISTORY} (observed_at)"
    " where previous_price is not null and price != previous_price"
)


def ensure_db_shape(db: Database) -> None:
    """Full-text search, indexes and the aggregates: idempotent, run once before publication."""
    if not db[BOOKS].detect_fts():
        db[BOOKS].enable_fts(FTS_COLUMNS, create_triggers=True, tokenize="porter")
    for columns in BOOK_INDEXES:
        db[BOOKS].create_index(columns, if_not_exists=True)
    db[PRICE_HISTORY].create_index(["run_id"], if_not_exists=True)
    db[PRICE_HISTORY].create_index(["observed_at"], if_not_exists=True)
    db.execute(PRICE_CHANGES_INDEX)
    ensure_title_index(db)  # the API's title search: an FTS5 trigram index of folded titles
    # Last: the aggregates end with table_counts, which counts every table created above.
    aggregates.build(db)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_CATEGORY_PATH = re.compile(r"/category/books/(?P<slug>[^/]+?)_(?P<id>\d+)/")


def category_from_url(name: str, url: str) -> dict[str, Any] | None:
    """'.../category/books/travel_2/index.html' -> {id: 2, slug: 'travel', name, url}."""
    key = _category_key(url)
    if key is None:
        return None
    return {"id": key[0], "name": name, "slug": key[1], "url": url}


@lru_cache(maxsize=1024)  # every book names its category's URL: the site has 50
def _category_key(url: str) -> tuple[int, str] | None:
    match = _CATEGORY_PATH.search(urlparse(url).path)
    return (int(match["id"]), match["slug"]) if match else None


def book_row(record: Mapping[str, Any], category_id: int) -> dict[str, Any]:
    """A clean book record as stored: the category becomes a foreign key."""
    row = {k: v for k, v in record.items() if k not in ("category", "category_url")}
    row["category_id"] = category_id
    if row.get("in_stock") is not None:
        row["in_stock"] = int(bool(row["in_stock"]))
    return row


def save_categories(db: Database, categories: Iterable[Mapping[str, Any]]) -> None:
    db[CATEGORIES].upsert_all(categories, pk="id")


def save_books(
    db: Database, records: Iterable[Mapping[str, Any]], run_id: int | None = None
) -> int:
    """Upsert clean book records (with their categories); return the price_history rows added.

    A history row is written when a book first appears or its price or stock count changes, so
    saving the same records twice adds nothing.
    """
    records = list(records)
    if not records:
        return 0
    categories = {}
    rows = []
    for record in records:
        category = category_from_url(record["category"], record["category_url"])
        if category is None:
            raise ValueError(f"no category id in {record.get('category_url')!r}")
        categories[category["id"]] = category
        rows.append(book_row(record, category["id"]))
    history = _history_rows(db, rows, run_id)
    with db.conn:
        save_categories(db, categories.values())
        db[BOOKS].upsert_all(rows, pk="id")
        if history:
            db[PRICE_HISTORY].insert_all(history)
    return len(history)


def _history_rows(db: Database, rows: list[dict[str, Any]], run_id: int | None) -> list[dict]:
    ids = [row["id"] for row in rows]
    placeholders = ", ".join("?" for _ in ids)
    known = {
        r["id"]: (r["price"], r["stock_count"])
        for r in db.query(f"select id, price, stock_count from books where id in ({placeholders})", ids)
    }
    # Each book's latest observation: the previous price and run of the row written now.
    latest = {
        r["book_id"]: (r["price"], r["run_id"])
        for r in db.query(
            f"select book_id, price, run_id from {PRICE_HISTORY} h where book_id in ({placeholders})"
            f" and id = (select id from {PRICE_HISTORY} where book_id = h.book_id"
            " order by observed_at desc, id desc limit 1)",
            ids,
        )
    }
    history = []
    for row in rows:
        if known.get(row["id"]) == (row["price"], row.get("stock_count")):
            continue
        previous_price, previous_run_id = latest.get(row["id"], (None, None))
        history.append(
            {
                "book_id": row["id"],
                "run_id": run_id,
                "price": row["price"],
                "stock_count": row.get("stock_count"),
                "observed_at": row.get("scraped_at") or utc_now(),
                "previous_price": previous_price,
                "previous_run_id": previous_run_id,
            }
        )
        latest[row["id"]] = (row["price"], run_id)
    return history


def remove_books_except(db: Database, keep: Iterable[int]) -> int:
    """Delete the books (and their price history) whose ids are not in `keep`; return how many.

    FTS rows follow through the triggers ensure_db_shape() installs (a crawl's staging copy has no
    full-text index until its publication builds it).
    """
    keep_json = json.dumps(sorted(keep))
    not_kept = "select id from books where id not in (select value from json_each(?))"
    gone = [row["id"] for row in db.query(not_kept, [keep_json])]
    if gone:
        gone_json = json.dumps(gone)
        with db.conn:
            db.execute(
                f"delete from {PRICE_HISTORY} where book_id in (select value from json_each(?))",
                [gone_json],
            )
            db.execute(f"delete from {BOOKS} where id in (select value from json_each(?))", [gone_json])
    return len(gone)


def save_crawl_run(db: Database, run: Mapping[str, Any]) -> None:
    """Insert or update one crawl_runs row (drops and failures given as dicts are stored as JSON)."""
    row = {
        name: json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        for name, value in run.items()
    }
    db[CRAWL_RUNS].upsert(row, pk="id")
