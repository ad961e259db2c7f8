"""The per-query result budget on a real SQLite connection, and who is outside it."""

from __future__ import annotations

import sqlite3

import pytest

from books_scraper.api.cache import VersionCache
from books_scraper.web.query_limits import ResultBudget, ResultTooLarge, limit_connection, unbudgeted

ROWS = "with recursive n(i) as (select 1 union all select i + 1 from n where i < 100) "


@pytest.fixture
def conn():
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    limit_connection(conn, ResultBudget(max_bytes=10_000))
    yield conn
    conn.close()


def test_rows_are_counted_across_fetches_of_one_cursor(conn):
    cursor = conn.execute(ROWS + "select i, randomblob(120) from n")  # 100 x 128 bytes
    assert len(cursor.fetchmany(50)) == 50
    with pytest.raises(ResultTooLarge, match="larger than"):
        cursor.fetchall()


def test_each_query_has_its_own_budget(conn):
    for _ in range(3):
        rows = conn.execute(ROWS + "select i, randomblob(80) from n").fetchall()
        assert len(rows) == 100 and rows[-1]["i"] == 100  # still sqlite3.Row, read by name


def test_too_large_is_an_operational_error_so_datasette_answers_400(conn):
    with pytest.raises(sqlite3.OperationalError):
        conn.execute(ROWS + "select i, randomblob(200) from n").fetchall()


def whole_table(conn):
    """A whole-table read of the project's own, as the caches make (VersionCache)."""
    return conn.execute("select * from books").fetchall()


def test_the_projects_own_reads_run_outside_the_budget(conn):
    conn.execute("create table books (id integer primary key, price real, rating int, in_stock int,"
                 " stock_count int, category_id int)")
    conn.executemany("insert into books values (?, 1.5, 3, 1, 2, 7)", [(i,) for i in range(1, 2001)])
    with pytest.raises(ResultTooLarge):
        whole_table(conn)
    assert len(unbudgeted(whole_table)(conn)) == 2000
    # and the connection keeps its budget afterwards
    with pytest.raises(ResultTooLarge):
        conn.execute("select * from books").fetchall()


async def test_the_cache_computes_outside_the_budget(conn):
    class Database:  # what VersionCache needs of Datasette's Database: a name, a path, execute_fn
        name, path = "books", None

        async def execute_fn(self, fn):
            return fn(conn)

    conn.execute("create table books (id integer primary key, price real, rating int, in_stock int,"
                 " stock_count int, category_id int)")
    conn.executemany("insert into books values (?, 1.5, 3, 1, 2, 7)", [(i,) for i in range(1, 2001)])
    assert len(await VersionCache().get(Database(), "every book", whole_table)) == 2000
