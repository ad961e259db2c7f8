"""The aggregates stored at publication (books_scraper/aggregates.py): their figures, their counts,
and the canned queries and charts that read them answering exactly what the queries over every book
answered before."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from datasette.app import Datasette
from datasette_dashboards import replace_opts_in_query
from sqlite_utils import Database

from books_scraper import aggregates, storage
from books_scraper.web.served_metadata import load_metadata

TRAVEL = "http://example.test/catalogue/category/books/travel_2/index.html"
POETRY = "http://example.test/catalogue/category/books/poetry_23/index.html"

# The canned queries and dashboard charts as they were before the aggregates: each read every book.
OLD_QUERIES = {
    "books_rated_at_least": """
        select b.id, b.title, c.name as category, b.rating, b.price, b.in_stock
        from books b join categories c on c.id = b.category_id
        where b.rating >= cast(coalesce(nullif(:min_rating, ''), 5) as integer)
          and (:category = '' or c.name = :category)
        order by b.rating desc, b.price, b.title""",
    "category_summary": """
        select c.name as category, count(*) as books,
          round(avg(b.price), 2) as avg_price, min(b.price) as min_price,
          max(b.price) as max_price, round(avg(b.rating), 2) as avg_rating
        from books b join categories c on c.id = b.category_id
        group by c.id
        order by books desc, category""",
    "cheapest_book_per_category": """
        select category, id, title, price, rating
        from (
          select c.name as category, b.id, b.title, b.price, b.rating,
            row_number() over (partition by b.category_id order by b.price, b.title) as place
          from books b join categories c on c.id = b.category_id
        )
        where place = 1
        order by category""",
    "price_changes": """
        with observed as (
          select book_id, run_id, price, observed_at,
            lag(price) over seen as previous_price,
            lag(run_id) over seen as previous_run_id
          from price_history
          window seen as (partition by book_id order by observed_at, id)
        )
        select o.book_id, b.title, o.previous_run_id, o.run_id, o.previous_price, o.price,
          round(o.price - o.previous_price, 2) as change, o.observed_at
        from observed o join books b on b.id = o.book_id
        where o.previous_price is not null and o.price != o.previous_price
          and (:since = '' or o.observed_at >= :since)
        order by o.observed_at desc, abs(o.price - o.previous_price) desc, o.book_id""",
}
OLD_CHARTS = {
    "total-books": """
        select count(*) as books from books
        where true [[ and category_id in (select id from categories where name = :category) ]]""",
    "average-price": """
        select iif(count(price) > 0, '£' || printf('%.2f', avg(price)), 'No books') as average_price from books
        where true [[ and category_id in (select id from categories where name = :category) ]]""",
    "books-per-category": """
        select c.name as category, count(*) as books
        from books b join categories c on c.id = b.category_id
        where true [[ and c.name = :category ]]
        group by c.id order by books desc, category""",
    "rating-distribution": """
        select rating, count(*) as books from books
        where true [[ and category_id in (select id from categories where name = :category) ]]
        group by rating order by rating""",
    "price-histogram": """
        select cast(price / 5 as integer) * 5 as price_from,
          cast(price / 5 as integer) * 5 + 5 as price_to, count(*) as books
        from books
        where true [[ and category_id in (select id from categories where name = :category) ]]
        group by price_from order by price_from""",
    "average-price-by-rating": """
        select rating, round(avg(price), 2) as average_price, count(*) as books from books
        where true [[ and category_id in (select id from categories where name = :category) ]]
        group by rating order by rating""",
}


def record(book_id: int, price: float, rating: int, category_url: str = TRAVEL, **extra) -> dict:
    name = "Travel" if category_url == TRAVEL else "Poetry"
    return {
        "id": book_id, "upc": f"upc{book_id}", "title": f"Book {book_id}", "price": price,
        "price_incl_tax": price, "tax": 0.0, "currency": "GBP", "rating": rating,
        "availability": "In stock (3 available)", "in_stock": True, "stock_count": 3,
        "category": name, "category_url": category_url, "description": None,
        "product_type": "Books", "number_of_reviews": 0, "image_url": "http://example.test/i.jpg",
        "product_url": f"http://example.test/catalogue/b_{book_id}/index.html",
        "scraped_at": "2026-01-01T00:00:00+00:00", **extra,
    }


@pytest.fixture
def db(tmp_path) -> Database:
    db = storage.open_books_db(str(tmp_path / "books.db"))
    storage.save_books(db, [
        record(1, 10.0, 1), record(2, 12.5, 5), record(3, 14.99, 5, in_stock=False, stock_count=0),
        record(4, 51.77, 3),
    ])
    storage.save_categories(db, [{"id": 23, "name": "Poetry", "slug": "poetry", "url": POETRY}])
    storage.ensure_db_shape(db)
    return db


def rows(db: Database, sql: str, params=()) -> list[tuple]:
    return db.execute(sql, params).fetchall()


def test_split_fraction_is_sha256_of_seed_and_id_over_two_to_the_64():
    digest = hashlib.sha256(b"42:1000").digest()
    assert aggregates.split_fraction(42, 1000) == int.from_bytes(digest[:8], "big") / 2**64
    assert aggregates.split_fraction(7, 1000) != aggregates.split_fraction(42, 1000)
    assert 0 <= aggregates.split_fraction(42, 1) < 1


def test_category_figures_describe_every_category_empty_ones_too(db):
    figures = {row["name"]: row for row in db["category_figures"].rows}
    travel = {k: v for k, v in figures["Travel"].items() if k not in ("average_price", "sum_price")}
    assert travel == {
        "category_id": 2, "name": "Travel", "slug": "travel", "url": TRAVEL, "books": 4,
        "in_stock": 3, "total_stock": 9, "min_price": 10.0, "max_price": 51.77,
        "average_rating": 3.5,
    }
    assert figures["Travel"]["sum_price"] == pytest.approx(10.0 + 12.5 + 14.99 + 51.77)
    assert figures["Travel"]["average_price"] == pytest.approx((10.0 + 12.5 + 14.99 + 51.77) / 4)
    assert figures["Poetry"] == {
        "category_id": 23, "name": "Poetry", "slug": "poetry", "url": POETRY, "books": 0,
        "in_stock": 0, "total_stock": 0, "average_price": None, "min_price": None,
        "max_price": None, "average_rating": None, "sum_price": 0.0,
    }


def test_rating_figures_and_price_bins_count_each_book_once(db):
    assert rows(db, "select category_id, rating, books, sum_price from rating_figures order by rating") == [
        (2, 1, 1, 10.0), (2, 3, 1, 51.77), (2, 5, 2, pytest.approx(27.49)),
    ]
    assert rows(db, "select category_id, price_from, books from price_bins order by price_from") == [
        (2, 10, 3), (2, 50, 1),
    ]


def test_book_split_holds_each_books_fraction_for_the_default_seed(db):
    assert aggregates.DEFAULT_SPLIT_SEED == 42
    assert dict(rows(db, "select book_id, fraction from book_split")) == {
        book_id: aggregates.split_fraction(42, book_id) for book_id in (1, 2, 3, 4)
    }
    plan = " ".join(row[3] for row in rows(db, "explain query plan select book_id from book_split where fraction < 0.2"))
    assert "book_split_fraction" in plan


def test_table_counts_count_every_table_and_come_last(db):
    names = [row[0] for row in rows(db, "select name from sqlite_master where type = 'table'")]
    counts = aggregates.table_counts(db.conn)
    assert set(counts) == set(names)
    assert {"books_fts_data", "category_figures", "book_split", "table_counts"} <= set(counts)
    for name in names:
        assert counts[name] == rows(db, f"select count(*) from [{name}]")[0][0], name


def test_rebuilding_is_idempotent_and_follows_the_books(db):
    def figures():
        return {
            table: rows(db, f"select * from {table} order by 1, 2")
            for table in ("category_figures", "rating_figures", "price_bins", "book_split", "table_counts")
        }

    before = figures()
    storage.ensure_db_shape(db)
    assert figures() == before
    storage.remove_books_except(db, keep={1, 2, 3})
    storage.ensure_db_shape(db)
    assert [row[0] for row in rows(db, "select book_id from book_split order by 1")] == [1, 2, 3]
    assert rows(db, "select books from category_figures where name = 'Travel'") == [(3,)]
    assert aggregates.table_counts(db.conn)["books"] == 3


def test_a_database_without_aggregates_has_no_built_version(tmp_path, db):
    assert aggregates.built_version(db.conn) == aggregates.AGGREGATES_VERSION
    old = storage.open_books_db(str(tmp_path / "old.db"))
    assert aggregates.built_version(old.conn) is None


def test_the_build_is_one_transaction(db, monkeypatch):
    """A build that fails half-way leaves the previous aggregates as they were."""
    before = rows(db, "select * from category_figures order by 1")
    monkeypatch.setattr(aggregates, "_write_table_counts", lambda db: 1 / 0)
    storage.save_books(db, [record(5, 20.0, 2)])
    with pytest.raises(ZeroDivisionError):
        aggregates.build(db)
    assert rows(db, "select * from category_figures order by 1") == before
    assert aggregates.table_counts(db.conn)["books"] == 4


# --- The canned queries and charts against the queries they replace, on a real crawl -------------


@pytest.fixture(scope="module")
def changed_prices(published_db, tmp_path_factory) -> Path:
    """The session's crawled database after a second run changed some prices and stocks."""
    path = tmp_path_factory.mktemp("changed") / "books.db"
    shutil.copyfile(published_db.path, path)
    db = storage.open_books_db(str(path))
    books = rows(db, "select b.*, c.name, c.url from books b join categories c on c.id = b.category_id"
                     " where b.id % 7 = 0 order by b.id")
    columns = [d[0] for d in db.execute("select * from books limit 0").description] + ["category", "category_url"]
    changed = []
    for i, values in enumerate(books):
        book = dict(zip(columns, values))
        book.pop("category_id")
        book["scraped_at"] = "2099-01-0%dT00:00:00+00:00" % (1 + i % 3)
        if i % 2:
            book["price"] = round(book["price"] + 1.25, 2)
        else:
            book["stock_count"] = (book["stock_count"] or 0) + 1
        changed.append(book)
    storage.save_books(db, changed, run_id=99)
    storage.ensure_db_shape(db)
    db.close()
    return path


def new_sql(kind: str, name: str) -> str:
    metadata = load_metadata()
    if kind == "query":
        return metadata["databases"]["books"]["queries"][name]["sql"]
    return metadata["plugins"]["datasette-dashboards"]["books"]["charts"][name]["query"]


def answer(path: Path, sql: str, params: dict) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_every_old_query_and_chart_is_replaced():
    metadata = load_metadata()
    assert set(metadata["plugins"]["datasette-dashboards"]["books"]["charts"]) == set(OLD_CHARTS)
    assert set(OLD_QUERIES) <= set(metadata["databases"]["books"]["queries"])


QUERY_PARAMS = {
    "books_rated_at_least": [
        {"min_rating": "", "category": ""}, {"min_rating": "1", "category": ""},
        {"min_rating": "4", "category": "Mystery"}, {"min_rating": "", "category": "Poetry"},
        {"min_rating": "3", "category": "Travel"},
    ],
    "category_summary": [{}],
    "cheapest_book_per_category": [{}],
    "price_changes": [{"since": ""}, {"since": "2099-01-02"}, {"since": "2000-01-01"}],
}


@pytest.mark.parametrize("name,params", [
    pytest.param(name, params, id=f"{name}-{'-'.join(params.values()) or 'plain'}")
    for name in sorted(OLD_QUERIES) for params in QUERY_PARAMS[name]
])
def test_a_canned_query_answers_what_the_query_over_every_book_answered(changed_prices, name, params):
    old = answer(changed_prices, OLD_QUERIES[name], params)
    assert old, "the comparison needs rows"
    assert answer(changed_prices, new_sql("query", name), params) == old


@pytest.mark.parametrize("name", sorted(OLD_CHARTS))
def test_a_chart_answers_what_the_query_over_every_book_answered(changed_prices, name):
    categories = [row[0] for row in answer(changed_prices, "select name from categories order by name", {})]
    for category in ["", *categories, "No such category"]:
        options = {"category": category} if category else {}
        old = answer(changed_prices, replace_opts_in_query(OLD_CHARTS[name], options), options)
        new = answer(changed_prices, replace_opts_in_query(new_sql("chart", name), options), options)
        assert new == old, (name, category)


def test_cheapest_book_per_category_reads_the_index(changed_prices):
    plan = " ".join(row[3] for row in answer(
        changed_prices, "explain query plan " + new_sql("query", "cheapest_book_per_category"), {}
    ))
    assert "idx_books_category_id_price_title" in plan


def test_books_rated_at_least_reads_an_index_in_its_order(changed_prices):
    plan = [row[3] for row in answer(
        changed_prices, "explain query plan " + new_sql("query", "books_rated_at_least"),
        {"min_rating": "", "category": ""},
    )]
    assert "idx_books_rating_price_title" in " ".join(plan)
    assert "idx_books_category_id_rating_price_title" in " ".join(plan)
    assert not any("TEMP B-TREE" in step for step in plan)


def test_price_changes_read_no_window_over_the_history(changed_prices):
    plan = " ".join(row[3] for row in answer(
        changed_prices, "explain query plan " + new_sql("query", "price_changes"), {"since": ""}
    ))
    assert "price_history_changes" in plan


async def test_table_counts_equal_what_datasette_counts_itself(published_db):
    """Datasette's own count of every table it lists, with no inspect data: the same figures."""
    ds = Datasette(immutables=[str(published_db.path)])
    counted = await ds.get_database("books").table_counts(limit=60_000)
    assert aggregates.table_counts(sqlite3.connect(f"file:{published_db.path}?mode=ro", uri=True)) == counted
