"""Datasette's search page on the books table: a broad search is served without a count or facets,
in title order along the publication's partial index, with the same rows (web/search_page.py)."""

from __future__ import annotations

import html
import re
import sqlite3
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlite_utils
from serving import publication
from support import query

from books_scraper import aggregates
from books_scraper.web import search_page

LIMIT = 50  # BROAD_SEARCH_BOOKS in these tests: a crawled catalogue has ~1000 books
BROAD_WORD = "the"
MATCHING = "select id from books where id in (select rowid from books_fts where books_fts match ?)"


@pytest.fixture
def ds(published_db, monkeypatch):
    monkeypatch.setattr(search_page, "BROAD_SEARCH_BOOKS", LIMIT)
    return publication(published_db.path, published_db.operations_path)


def matching(path, term: str) -> list[dict]:
    return query(path, f"select id, title from books where id in ({MATCHING}) order by title, id", [term])


@pytest.fixture
def narrow_title(published_db) -> str:
    title = published_db.plain_title()
    assert 0 < len(matching(published_db.path, every_word(title))) <= LIMIT
    return title


def every_word(text: str) -> str:
    """The FTS5 query Datasette's escape_fts makes of a search: each word quoted, all of them."""
    return " ".join(f'"{word}"' for word in text.split())


def switches(url: str) -> dict[str, str]:
    return {k: v for k, v in parse_qsl(urlsplit(url).query) if k in search_page.SWITCHES}


async def test_a_broad_search_has_no_count_or_facets_in_json(ds, published_db):
    assert len(matching(published_db.path, BROAD_WORD)) > LIMIT
    answer = await ds.client.get(f"/books/books.json?_search={BROAD_WORD}")
    assert answer.status_code == 200
    data = answer.json()
    assert data["filtered_table_rows_count"] is None
    assert data["facet_results"] == {}
    assert switches(data["next_url"]) == {"_nocount": search_page.BROAD, "_nofacet": search_page.BROAD}


async def test_a_broad_search_page_shows_the_index_count_and_says_why_no_facets(ds, published_db):
    expected = len(matching(published_db.path, BROAD_WORD))
    page = await ds.client.get(f"/books/books?_search={BROAD_WORD}")
    assert page.status_code == 200
    heading = html.unescape(re.search(r"<h3>(.*?)</h3>", page.text, re.S).group(1))
    assert " ".join(heading.split()).startswith(f'{expected:,} rows where search matches "{BROAD_WORD}"')
    assert f"This search matches {expected:,} books, more than the {LIMIT:,}" in " ".join(page.text.split())
    assert 'class="facet-info' not in page.text


@pytest.mark.parametrize("sort,column", [
    pytest.param("", "title", id="by-title-the-tables-order"),
    pytest.param("&_sort=price", "price", id="by-price"),
    pytest.param("&_sort_desc=rating", "rating", id="by-rating-best-first"),
    pytest.param("&_sort_desc=price", "price", id="by-price-descending-not-hinted"),
])
async def test_the_order_hint_changes_the_plan_not_the_rows(ds, published_db, sort, column):
    """Every page of a broad search, followed by next links, in the order Datasette gives without
    the hint (the client's own _nocount and _nofacet leave the request alone); every match once."""
    paths = {"hinted": f"/books/books.json?_search={BROAD_WORD}&_size=40{sort}",
             "plain": f"/books/books.json?_search={BROAD_WORD}&_size=40{sort}&_nocount=1&_nofacet=1"}
    pages: dict[str, list] = {}
    for name, path in paths.items():
        rows = []
        while path:
            data = (await ds.client.get(path)).json()
            rows += [(row[data["columns"].index(column)], row[0]) for row in data["rows"]]
            path = data["next_url"] and data["next_url"].replace("http://localhost", "")
        pages[name] = rows
    assert [value for value, _ in pages["hinted"]] == [value for value, _ in pages["plain"]]
    assert sorted(book_id for _, book_id in pages["hinted"]) == sorted(b["id"] for b in matching(published_db.path, BROAD_WORD))


def plan(path, sql: str) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return " | ".join(row[3] for row in conn.execute(f"explain query plan {sql}", [BROAD_WORD]))
    finally:
        conn.close()


@pytest.mark.parametrize("column,direction", aggregates.SEARCH_ORDERS.items())
def test_the_hint_makes_sqlite_walk_the_partial_index(published_db, column, direction):
    sql = f"select * from books where id in ({MATCHING}){{}} order by {column} {direction}, id limit 101"
    hinted = plan(published_db.path, sql.format(f" and {aggregates.search_order_hint(column)}"))
    plain = plan(published_db.path, sql.format(""))
    index = aggregates.search_order_index(column)
    assert f"USING INDEX {index}" in hinted and "TEMP B-TREE" not in hinted
    assert index not in plain  # no query without the hint can use it


async def test_a_narrow_search_is_datasettes_own_page(ds, published_db, narrow_title):
    expected = len(matching(published_db.path, every_word(narrow_title)))
    data = (await ds.client.get("/books/books.json", params={"_search": narrow_title})).json()
    assert data["filtered_table_rows_count"] == expected
    assert set(data["facet_results"]) == {"category_id", "rating"}


def biggest_category(path) -> int:
    return query(path, "select category_id from books group by 1 order by count(*) desc limit 1")[0]["category_id"]


async def test_a_broad_search_with_a_filter_has_the_filtered_rows_without_count_or_facets(ds, published_db):
    category_id = biggest_category(published_db.path)
    expected = [r["id"] for r in query(
        published_db.path,
        f"select id from books where category_id = ? and id in ({MATCHING}) order by title, id", [category_id, BROAD_WORD])]
    data = (await ds.client.get(f"/books/books.json?_search={BROAD_WORD}&category_id={category_id}&_size=max")).json()
    assert data["filtered_table_rows_count"] is None and data["facet_results"] == {}
    assert [row[0] for row in data["rows"]] == expected  # every row, in the table's order, no hint
    assert "is not null" not in data["query"]["sql"]


async def test_a_broad_search_page_with_a_filter_says_why_there_is_no_count(ds, published_db):
    category_id = biggest_category(published_db.path)
    page = (await ds.client.get(f"/books/books?_search={BROAD_WORD}&category_id={category_id}")).text
    note = re.search(r'<p class="broad-search">(.*?)</p>', page, re.S)
    assert note and f"more than {LIMIT} books before" in " ".join(note.group(1).split())


@pytest.mark.parametrize("extra,count_shown", [
    pytest.param("&_nocount=broad-search&_nofacet=broad-search", True, id="marks-from-a-broad-page-are-dropped"),
    pytest.param("&_nocount=1", False, id="a-clients-own-nocount-is-kept"),
])
async def test_each_request_decides_afresh(ds, narrow_title, extra, count_shown):
    data = (await ds.client.get(f"/books/books.json?_search={narrow_title.replace(' ', '+')}{extra}")).json()
    assert (data["filtered_table_rows_count"] is not None) == count_shown
    assert set(data["facet_results"]) == {"category_id", "rating"}


async def test_a_broad_search_asking_for_a_facet_gets_it_and_its_count(ds, published_db):
    data = (await ds.client.get(f"/books/books.json?_search={BROAD_WORD}&_facet=in_stock")).json()
    assert data["filtered_table_rows_count"] == len(matching(published_db.path, BROAD_WORD))
    assert set(data["facet_results"]) == {"category_id", "rating", "in_stock"}


@pytest.mark.parametrize("path", [
    pytest.param('/books/books.json?_search="&_searchmode=raw', id="raw-syntax-error"),
    pytest.param("/books/books.json?_search=", id="empty-search"),
    pytest.param("/books/books.json?_search=the&_fts_table=nope", id="unknown-fts-table"),
])
async def test_odd_searches_get_datasettes_answer_never_a_500(ds, path):
    answer = await ds.client.get(path)
    assert answer.status_code < 500


def test_the_index_and_its_statistics_are_built_once(published_copy):
    db = sqlite_utils.Database(published_copy.path)
    aggregates.build(db)
    aggregates.build(db)
    stats = db.execute("select tbl, idx, stat from sqlite_stat1 order by idx").fetchall()
    names = sorted(aggregates.search_order_index(column) for column in aggregates.SEARCH_ORDERS)
    assert stats == [("books", name, aggregates.SEARCH_ORDER_STAT) for name in names]
    indexes = [i.name for i in db["books"].indexes]
    assert all(indexes.count(name) == 1 for name in names)


def test_an_index_of_another_definition_is_replaced(published_copy):
    db = sqlite_utils.Database(published_copy.path)
    index = aggregates.search_order_index("title")
    db.execute(f"drop index {index}")
    db.execute(f"create index {index} on books (title) where title >= ''")
    aggregates.build(db)
    [sql] = [row[0] for row in db.execute("select sql from sqlite_master where name = ?", [index])]
    assert sql.endswith(f"where {aggregates.search_order_hint('title')}")
