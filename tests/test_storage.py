import json

import pytest
from sqlite_utils import Database

from books_scraper import aggregates, operations, storage

POETRY = "http://example.test/catalogue/category/books/poetry_23/index.html"


def record(book_id: int = 1, price: float = 10.0, stock: int = 3, **extra) -> dict:
    row = {
        "id": book_id, "upc": f"upc{book_id}", "title": f"Book {book_id}", "price": price,
        "price_incl_tax": price, "tax": 0.0, "currency": "GBP", "rating": 4,
        "availability": f"In stock ({stock} available)", "in_stock": True, "stock_count": stock,
        "category": "Poetry", "category_url": POETRY, "description": None, "product_type": "Books",
        "number_of_reviews": 0, "image_url": "http://example.test/i.jpg",
        "product_url": f"http://example.test/catalogue/b_{book_id}/index.html",
        "scraped_at": "2026-01-01T00:00:00+00:00",
    }
    row.update(extra)
    return row


@pytest.fixture
def db(tmp_path) -> Database:
    return storage.open_books_db(str(tmp_path / "books.db"))


def test_schema_is_declared_by_migrations(db):
    assert set(db.table_names()) >= {"books", "categories", "crawl_runs", "price_history"}
    books = db["books"]
    assert books.pks == ["id"]
    assert [(fk.column, fk.other_table) for fk in books.foreign_keys] == [("category_id", "categories")]
    assert books.columns_dict["price"] is float
    assert any(index.unique and index.columns == ["upc"] for index in books.indexes)
    assert [m.name for m in storage.migrations.applied(db)] == [
        "m001_initial", "m002_crawl_runs_removed", "m003_crawl_runs_failures",
        "m004_price_history_previous",
    ]
    assert storage.migrations.pending(db) == []


def test_save_books_stores_whole_rows(db):
    added = storage.save_books(db, [record()], run_id=None)
    assert added == 1
    expected = {k: v for k, v in record().items() if k not in ("category", "category_url")}
    assert db["books"].get(1) == {**expected, "in_stock": 1, "category_id": 23}
    assert list(db["categories"].rows) == [{"id": 23, "name": "Poetry", "slug": "poetry", "url": POETRY}]


def test_saving_twice_adds_no_history_and_no_duplicates(db):
    storage.save_books(db, [record(1), record(2)])
    assert storage.save_books(db, [record(1), record(2)]) == 0
    assert db["books"].count == 2
    assert db["price_history"].count == 2


def test_changed_price_or_stock_adds_one_history_row(db):
    storage.save_books(db, [record(1), record(2)])
    assert storage.save_books(db, [record(1, price=12.5), record(2)]) == 1
    assert storage.save_books(db, [record(1, price=12.5), record(2, stock=0)]) == 1
    rows = [(r["book_id"], r["price"], r["stock_count"]) for r in db["price_history"].rows_where(order_by="id")]
    assert rows == [(1, 10.0, 3), (2, 10.0, 3), (1, 12.5, 3), (2, 10.0, 0)]


def test_a_history_row_carries_the_previous_price_and_run(db):
    storage.save_books(db, [record(1), record(2)], run_id=1)
    storage.save_books(db, [record(1, price=12.5), record(2)], run_id=2)
    storage.save_books(db, [record(1, price=9.0), record(2, stock=0)], run_id=3)
    rows = [
        (r["book_id"], r["run_id"], r["price"], r["previous_run_id"], r["previous_price"])
        for r in db["price_history"].rows_where(order_by="id")
    ]
    assert rows == [
        (1, 1, 10.0, None, None), (2, 1, 10.0, None, None),
        (1, 2, 12.5, 1, 10.0),
        (1, 3, 9.0, 2, 12.5), (2, 3, 10.0, 1, 10.0),
    ]


def test_the_previous_price_is_filled_in_once_for_existing_history(tmp_path):
    path = str(tmp_path / "old.db")
    old = Database(path)
    storage.migrations.apply(old, stop_before="m004_price_history_previous")
    old["categories"].insert({"id": 23, "name": "Poetry"})
    old["books"].insert_all(
        [{**storage.book_row({k: v for k, v in record(i).items()}, 23)} for i in (1, 2)], pk="id"
    )
    history = [  # out of id order: lag follows observed_at, then id
        (1, 1, 10.0, "2026-01-01"), (2, 1, 7.0, "2026-01-01"), (1, 3, 11.0, "2026-01-03"),
        (1, 2, 12.0, "2026-01-02"), (2, 3, 7.0, "2026-01-03"),
    ]
    old["price_history"].insert_all(
        [{"book_id": b, "run_id": r, "price": p, "observed_at": at} for b, r, p, at in history]
    )
    db = storage.open_books_db(path)
    rows = {
        (r["book_id"], r["run_id"]): (r["previous_run_id"], r["previous_price"])
        for r in db["price_history"].rows
    }
    assert rows == {
        (1, 1): (None, None), (1, 2): (1, 10.0), (1, 3): (2, 12.0),
        (2, 1): (None, None), (2, 3): (1, 7.0),
    }


def test_record_without_category_id_is_refused(db):
    with pytest.raises(ValueError, match="no category id"):
        storage.save_books(db, [record(category_url="http://example.test/elsewhere")])
    assert db["books"].count == 0


def test_ensure_db_shape_adds_fts_and_indexes_idempotently(db):
    storage.save_books(db, [record(1, description="A story about whales"), record(2)])
    storage.ensure_db_shape(db)
    storage.ensure_db_shape(db)
    assert db["books"].detect_fts() == "books_fts"
    assert [r["id"] for r in db["books"].search("whales")] == [1]
    indexed = {tuple(index.columns) for index in db["books"].indexes}
    assert {("price",), ("rating",), ("category_id",), ("in_stock",), ("category_id", "price", "title")} <= indexed
    assert ("observed_at",) in {tuple(index.columns) for index in db["price_history"].indexes}


def test_fts_follows_later_upserts(db):
    storage.save_books(db, [record(1)])
    storage.ensure_db_shape(db)
    storage.save_books(db, [record(1, title="Moby Dick")])
    assert [r["id"] for r in db["books"].search("moby")] == [1]


def test_a_staging_copy_is_written_without_fts_and_indexes_then_publication_builds_them(db):
    storage.save_books(db, [record(1, title="Moby Dick"), record(2, title="Whale Songs")])
    storage.ensure_db_shape(db)
    storage.prepare_staging_db(db)
    assert db["books"].detect_fts() is None
    assert not {t.name for t in db["books"].triggers} & {"books_ai", "books_ad", "books_au"}
    # Left: the unique UPC, which the upserts need.
    assert [index.columns for index in db["books"].indexes] == [["upc"]]
    storage.save_books(db, [record(1, title="Billy Budd"), record(3, title="Typee")])
    storage.remove_books_except(db, [1, 3])
    storage.ensure_db_shape(db)
    assert {t.name for t in db["books"].triggers} >= {"books_ai", "books_ad", "books_au"}
    assert [r["id"] for r in db["books"].search("billy")] == [1]
    assert [r["id"] for r in db["books"].search("typee")] == [3]
    assert list(db["books"].search("moby")) == list(db["books"].search("whale")) == []
    assert db.execute("select count(*) from books_fts").fetchone()[0] == db["books"].count == 2
    indexed = [index.columns for index in db["books"].indexes]
    assert all([str(column) for column in columns] in indexed for columns in storage.BOOK_INDEXES)
    names = {index.name for index in db["books"].indexes}
    assert {aggregates.search_order_index(column) for column in aggregates.SEARCH_ORDERS} <= names
    storage.save_books(db, [record(3, title="Omoo")])  # and the published file follows later writes
    assert [r["id"] for r in db["books"].search("omoo")] == [3]


def test_category_from_url():
    assert storage.category_from_url("Travel", "http://x/catalogue/category/books/travel_2/index.html") == {
        "id": 2, "name": "Travel", "slug": "travel", "url": "http://x/catalogue/category/books/travel_2/index.html"
    }
    assert storage.category_from_url("Books", "http://x/catalogue/category/books_1/index.html") is None


def test_a_first_version_database_is_migrated(tmp_path):
    path = str(tmp_path / "old.db")
    old = Database(path)
    storage.migrations.apply(old, stop_before="m002_crawl_runs_removed")
    assert "removed" not in old["crawl_runs"].columns_dict
    db = storage.open_books_db(path)
    assert db["crawl_runs"].columns_dict["removed"] is int
    assert db["crawl_runs"].columns_dict["failures"] is str


def test_both_databases_journal_runs_in_the_same_crawl_runs_table(db, tmp_path):
    ops = operations.open_operations_db(str(tmp_path / "operations.db"))
    assert ops["crawl_runs"].schema == db["crawl_runs"].schema


def test_a_run_is_saved_with_its_drops_and_failures_as_json(db):
    run = {"id": 1, "started_at": "2026-01-01T00:00:00+00:00", "status": "published",
           "drops": {"missing price": 2}, "failures": {"HTTP 503": 1, "timeout": 2}}
    storage.save_crawl_run(db, run)
    row = db["crawl_runs"].get(1)
    assert (json.loads(row["drops"]), json.loads(row["failures"])) == (run["drops"], run["failures"])


def test_remove_books_except_takes_history_and_search_rows_along(db):
    storage.save_books(db, [record(1, description="whales"), record(2, description="whales"), record(3)])
    storage.ensure_db_shape(db)
    assert storage.remove_books_except(db, keep={1, 3}) == 1
    assert [r["id"] for r in db["books"].rows] == [1, 3]
    assert [r["book_id"] for r in db["price_history"].rows] == [1, 3]
    assert [r["id"] for r in db["books"].search("whales")] == [1]
    assert storage.remove_books_except(db, keep={1, 3}) == 0
