"""The books table's facets over the whole table come from the counts its publication stored, and
answer exactly what Datasette's own column facet answers (web/published_facets.py)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from datasette.facets import ColumnFacet
from serving import load_metadata, publication
from support import query

from books_scraper.web.published_facets import PUBLISHED_COUNTS, PublishedFacet

pytestmark = pytest.mark.asyncio


@pytest.fixture
def ds(published_db):
    return publication(published_db.path, published_db.operations_path)


@pytest.fixture
def counted(monkeypatch) -> list[type]:
    """The facet classes that counted a page's rows with Datasette's column facet (for at least
    one facet: every facet class runs on every page)."""
    classes, count_rows = [], ColumnFacet.facet_results

    async def recorded(self):
        if self.get_configs():
            classes.append(type(self))
        return await count_rows(self)

    monkeypatch.setattr(ColumnFacet, "facet_results", recorded)
    return classes


async def facets_of(ds, path: str) -> dict:
    response = await ds.client.get(path)
    assert response.status_code == 200, response.text[:300]
    data = response.json()
    assert not data.get("facets_timed_out")
    return data["facet_results"]


@pytest.mark.parametrize("size", ["1", "5", "max"])
async def test_whole_table_facets_are_datasettes_own(ds, counted, size):
    # The same request asks Datasette's column facet for the same columns: category_id_2, rating_2.
    facets = await facets_of(ds, f"/books/books.json?_size=0&_facet=category_id&_facet=rating&_facet_size={size}")
    assert counted == [ColumnFacet]  # the published ones read the stored counts
    for column in ("category_id", "rating"):
        ours, datasettes = facets[column], facets[f"{column}_2"]
        assert ours["type"] == datasettes["type"] == "column"
        assert ours["results"] == datasettes["results"]
        assert ours["truncated"] is datasettes["truncated"]
        assert ours["hideable"] is False and datasettes["hideable"] is True  # metadata's, and the request's


async def test_whole_table_facets_count_every_book(ds, published_db, counted):
    books = query(published_db.path, "select category_id, rating from books")
    facets = await facets_of(ds, "/books/books.json?_size=0&_facet_size=max&_sort=price")  # a sort filters nothing
    assert counted == []
    for column in ("category_id", "rating"):
        shown = {(row["value"], row["count"]) for row in facets[column]["results"]}
        assert shown == set(Counter(book[column] for book in books).items())


@pytest.mark.parametrize("filters", ["rating=5", "_search=the", "category_id__gt=3", "_where=price > 30"])
async def test_a_filtered_page_counts_its_own_rows(ds, published_db, counted, filters):
    where = {"rating=5": "rating = 5", "category_id__gt=3": "category_id > 3", "_where=price > 30": "price > 30",
             "_search=the": "id in (select rowid from books_fts where books_fts match 'the')"}[filters]
    books = query(published_db.path, f"select category_id, rating from books where {where}")
    facets = await facets_of(ds, f"/books/books.json?_size=0&_facet_size=max&{filters}")
    assert counted == [PublishedFacet]
    for column in ("category_id", "rating"):
        shown = {(row["value"], row["count"]) for row in facets[column]["results"]}
        assert shown == set(Counter(book[column] for book in books).items())
        assert facets[column]["type"] == "column"


async def test_the_page_heads_them_as_column_facets(ds):
    page = (await ds.client.get("/books/books")).text
    headings = re.findall(r'<p class="facet-info-name">\s*<strong>([^<]*?)\s*<span', page)
    assert sorted(h.strip() for h in headings) == ["category", "rating"]  # not "category (published)"


async def test_metadata_names_only_facets_with_stored_counts():
    facets = load_metadata()["databases"]["books"]["tables"]["books"]["facets"]
    assert facets == [{"published": column} for column in PUBLISHED_COUNTS]
