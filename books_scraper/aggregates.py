"""Figures computed once at publication and stored in the published books database (no Scrapy import).

The server, the canned queries, the dashboard and analysts read these small tables instead of
scanning every book: a million-book catalogue costs its aggregates once, when it is built, not on
every request or at every server start.

- `category_figures`: one row per category (empty ones too): books, stock and price/rating figures.
- `rating_figures`: (category, rating) -> books, sum of prices.
- `price_bins`: (category, 5 GBP bin) -> books.
- `book_split`: each book's train/test fraction for the default seed, indexed.
- `publication`: the aggregates' version, when they were built and the publication's hash (the
  identity Datasette uses as the ETag of the database download).
- `table_counts`: every table's row count, written last, so Datasette never counts at startup.

And, for a search matching a large share of the books (web/search_page.py), one partial index per
column and direction that search can be sorted by cheaply (SEARCH_ORDERS), each with the statistics SQLite's
planner reads for it (`sqlite_stat1`). Only a query carrying the index's always-true condition
(`search_order_hint`: the column is NOT NULL) can use it; its fixed statistics tell the planner a
walk along it reads about a page of rows, so it walks the column in order and stops after a page
instead of reading and sorting every match. A full `ANALYZE` would replace them with the true ones.

`build(db)` (re)builds them all in one transaction; `storage.ensure_db_shape(db)` calls it last.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterable, Iterator

from sqlite_utils import Database

CATEGORY_FIGURES = "category_figures"
RATING_FIGURES = "rating_figures"
PRICE_BINS = "price_bins"
BOOK_SPLIT = "book_split"
PUBLICATION = "publication"
TABLE_COUNTS = "table_counts"
AGGREGATE_TABLES = (CATEGORY_FIGURES, RATING_FIGURES, PRICE_BINS, BOOK_SPLIT, PUBLICATION, TABLE_COUNTS)

# Raised when a table above changes shape or meaning: the server rebuilds older files (startup.py).
AGGREGATES_VERSION = 1
DEFAULT_SPLIT_SEED = 42
# NOT NULL columns of books and the one direction each index serves: walked forward, an index gives
# ties in id order, as Datasette's next pages ask (order by <column> [desc], id); walked backward it
# would not, and a page's ties would be lost.
SEARCH_ORDERS = {"title": "asc", "price": "asc", "rating": "desc"}
SEARCH_ORDER_STAT = "100 1"  # sqlite_stat1: a walk reads ~100 entries, ~1 per value
PRICE_BIN_GBP = 5

SCHEMA = f"""
create table {CATEGORY_FIGURES} (
  category_id integer primary key references categories(id),
  name text not null,
  slug text,
  url text,
  books integer not null,
  in_stock integer not null,
  total_stock integer not null,
  average_price real,
  min_price real,
  max_price real,
  average_rating real,
  sum_price real not null
);
create table {RATING_FIGURES} (
  category_id integer not null references categories(id),
  rating integer not null,
  books integer not null,
  sum_price real not null,
  primary key (category_id, rating)
);
create table {PRICE_BINS} (
  category_id integer not null references categories(id),
  price_from integer not null,
  books integer not null,
  primary key (category_id, price_from)
);
create table {PUBLICATION} (
  aggregates_version integer not null,
  built_at text not null,
  hash text not null
);
"""

BOOK_SPLIT_SCHEMA = f"""
create table if not exists {BOOK_SPLIT} (
  book_id integer primary key references books(id),
  fraction real not null
);
create index if not exists {BOOK_SPLIT}_fraction on {BOOK_SPLIT} (fraction);
"""

# The few columns the figures need, read from books in one pass (the rows themselves are wide).
NARROW_BOOKS = (
    "create temp table aggregate_books as"
    " select category_id, rating, price, in_stock, stock_count from books"
)
FILL = [
    f"""insert into {CATEGORY_FIGURES}
    select c.id, c.name, c.slug, c.url, count(b.category_id), coalesce(sum(b.in_stock = 1), 0),
      coalesce(sum(b.stock_count), 0), avg(b.price), min(b.price), max(b.price), avg(b.rating),
      total(b.price)
    from categories c left join temp.aggregate_books b on b.category_id = c.id
    group by c.id""",
    f"""insert into {RATING_FIGURES}
    select category_id, rating, count(*), total(price) from temp.aggregate_books
    group by category_id, rating""",
    f"""insert into {PRICE_BINS}
    select category_id, cast(price / {PRICE_BIN_GBP} as integer) * {PRICE_BIN_GBP} as price_from, count(*)
    from temp.aggregate_books group by category_id, price_from""",
]

# /categories and /stats/categories: every category with its figures, by name (the shape the
# API's former join over books gave: id, name, slug, url, books, average, min, max price, rating).
CATEGORY_FIGURES_SELECT = (
    f"select category_id, name, slug, url, books, average_price, min_price, max_price, average_rating"
    f" from {CATEGORY_FIGURES} order by name, category_id"
)


def split_fraction(seed: int, book_id: int) -> float:
    """A book's place in [0, 1) for a seed: sha256 of "seed:id", its first 8 bytes over 2**64.

    It depends only on (seed, id), so a book stays on its side across crawls and as the catalogue
    grows; `fraction < test_size` is the test split.
    """
    digest = hashlib.sha256(f"{seed}:{book_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def build(db: Database) -> None:
    """(Re)build every aggregate table from books and categories, in one transaction.

    Idempotent: the same books give the same figures (the publication hash is new each time, as
    the file is). table_counts comes last and counts every table, itself included.
    """
    with db.atomic():
        for table in (CATEGORY_FIGURES, RATING_FIGURES, PRICE_BINS, PUBLICATION, TABLE_COUNTS):
            db.execute(f"drop table if exists {table}")
        _run_script(db, SCHEMA)
        db.execute("drop table if exists temp.aggregate_books")
        db.execute(NARROW_BOOKS)
        for sql in FILL:
            db.execute(sql)
        db.execute("drop table temp.aggregate_books")
        _update_book_split(db)
        _index_search_order(db)
        db.execute(
            f"insert into {PUBLICATION} (aggregates_version, built_at, hash)"
            " values (?, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), ?)",
            [AGGREGATES_VERSION, secrets.token_hex(32)],
        )
        _write_table_counts(db)


def _run_script(db: Database, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _update_book_split(db: Database) -> None:
    """Only books new since the last build are hashed: a fraction never changes for an id."""
    _run_script(db, BOOK_SPLIT_SCHEMA)
    db.execute(f"delete from {BOOK_SPLIT} where book_id not in (select id from books)")
    new_ids = (
        row[0]
        for row in db.execute(
            f"select id from books where id not in (select book_id from {BOOK_SPLIT}) order by id"
        ).fetchall()
    )
    db.conn.executemany(
        f"insert into {BOOK_SPLIT} (book_id, fraction) values (?, ?)", _fractions(new_ids)
    )


def search_order_index(column: str) -> str:
    return f"idx_books_{column}_searched"


def search_order_hint(column: str) -> str:
    """True of every book (the column is NOT NULL): the condition of the column's partial index."""
    return f"{column} is not null"


def _index_search_order(db: Database) -> None:
    db.execute("analyze sqlite_schema")  # creates sqlite_stat1 (empty) if it is not there yet
    for column, direction in SEARCH_ORDERS.items():
        index = search_order_index(column)
        sql = f"create index {index} on books ({column} {direction}) where {search_order_hint(column)}"
        existing = db.execute("select sql from sqlite_master where type = 'index' and name = ?", [index]).fetchone()
        if existing is None or existing[0] != sql:
            db.execute(f"drop index if exists {index}")  # another definition, from an earlier version
            db.execute(sql)
        db.execute("delete from sqlite_stat1 where idx = ?", [index])
        db.execute("insert into sqlite_stat1 (tbl, idx, stat) values ('books', ?, ?)", [index, SEARCH_ORDER_STAT])


def _fractions(book_ids: Iterable[int]) -> Iterator[tuple[int, float]]:
    for book_id in book_ids:
        yield book_id, split_fraction(DEFAULT_SPLIT_SEED, book_id)


def _write_table_counts(db: Database) -> None:
    db.execute(f"create table {TABLE_COUNTS} (name text primary key, count integer not null)")
    names = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
    counts = [
        (name, len(names) if name == TABLE_COUNTS else db.execute(f"select count(*) from [{name}]").fetchone()[0])
        for name in names
    ]
    db.conn.executemany(f"insert into {TABLE_COUNTS} (name, count) values (?, ?)", counts)


def table_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Every table's row count as written at publication."""
    return dict(conn.execute(f"select name, count from {TABLE_COUNTS}").fetchall())


def publication_hash(conn: sqlite3.Connection) -> str:
    """The publication's identity, written when its aggregates were built (see `build`)."""
    return conn.execute(f"select hash from {PUBLICATION}").fetchone()[0]


def built_version(conn: sqlite3.Connection) -> int | None:
    """The aggregates' version in this database, None when it has none (published by an older version)."""
    try:
        row = conn.execute(f"select aggregates_version from {PUBLICATION}").fetchone()
        conn.execute(f"select 1 from {TABLE_COUNTS} limit 1").fetchone()
    except sqlite3.OperationalError:  # no such table
        return None
    return row[0] if row else None
