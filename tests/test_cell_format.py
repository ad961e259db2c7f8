"""Prices with two decimals in the HTML pages, the same numbers in JSON (web/cell_format.py)."""

from __future__ import annotations

import html
import re

import pytest
from serving import load_metadata, publication
from support import query

from books_scraper.web.cell_format import is_money_column, money_cell


@pytest.fixture
def ds(published_db):
    return publication(published_db.path, published_db.operations_path)


def cells(page: str, column: str) -> list[str]:
    """The texts of a column's cells in a Datasette HTML table."""
    pattern = rf'<td class="col-{re.escape(column)}(?: [^"]*)?">(.*?)</td>'
    return [html.unescape(text).strip() for text in re.findall(pattern, page, re.S)]


@pytest.mark.parametrize("value,column,shown", [
    pytest.param(51.7, "price", "51.70", id="one-decimal-price"),
    pytest.param(51.77, "price_incl_tax", "51.77", id="two-decimals-stay"),
    pytest.param(0.0, "tax", "0.00", id="zero-tax"),
    pytest.param(-1.5, "change", "-1.50", id="negative-change"),
    pytest.param(12, "min_price", "12.00", id="integer-min-price"),
    pytest.param(35.123, "average_price", "35.12", id="average-rounded-to-pennies"),
    pytest.param(20.5, "avg_price", "20.50", id="avg-price"),
    pytest.param(9.9, "previous_price", "9.90", id="previous-price"),
    pytest.param(3.5, "rating", None, id="not-money"),
    pytest.param(3, "stock_count", None, id="a-count-is-not-money"),
    pytest.param("51.7", "price", None, id="text-left-as-it-is"),
    pytest.param(None, "price", None, id="null-left-to-datasette"),
    pytest.param(True, "price", None, id="boolean-is-not-a-number"),
    pytest.param(float("nan"), "price", None, id="nan-left-as-it-is"),
])
def test_money_cell(value, column, shown):
    assert money_cell(value, column) == shown


def test_every_money_column_of_the_canned_queries_is_recognised():
    names = {"price", "price_incl_tax", "tax", "min_price", "max_price", "average_price",
             "avg_price", "previous_price", "change"}
    assert all(is_money_column(name) for name in names)
    assert not any(is_money_column(name) for name in ["rating", "avg_rating", "books", "id", "pages"])


async def test_the_table_page_shows_prices_with_two_decimals_and_json_keeps_numbers(ds, published_db):
    books = query(published_db.path, "select price, price_incl_tax from books order by id limit 30")
    page = await ds.client.get("/books/books?_sort=id&_size=30&_col=price&_col=price_incl_tax")
    assert page.status_code == 200
    assert cells(page.text, "price") == [f"{b['price']:.2f}" for b in books]
    assert cells(page.text, "price_incl_tax") == [f"{b['price_incl_tax']:.2f}" for b in books]
    data = (await ds.client.get("/books/books.json?_sort=id&_size=30&_shape=array")).json()
    assert [row["price"] for row in data] == [b["price"] for b in books]
    assert all(isinstance(row["price"], float) for row in data)


async def test_the_row_page_shows_its_price_with_two_decimals(ds, published_db):
    book = query(published_db.path, "select id, price from books order by id limit 1")[0]
    page = await ds.client.get(f"/books/books/{book['id']}")
    assert page.status_code == 200
    assert cells(page.text, "price") == [f"{book['price']:.2f}"]


async def test_a_query_page_shows_two_decimals_and_its_json_the_numbers(ds):
    sql = "select 51.7 as price, -1.5 as change, 3.5 as rating, 'x' as title"
    page = await ds.client.get("/books", params={"sql": sql})
    assert page.status_code == 200
    assert (cells(page.text, "price"), cells(page.text, "change")) == (["51.70"], ["-1.50"])
    assert cells(page.text, "rating") == ["3.5"]
    data = (await ds.client.get("/books.json", params={"sql": sql, "_shape": "array"})).json()
    assert data == [{"price": 51.7, "change": -1.5, "rating": 3.5, "title": "x"}]
    csv = (await ds.client.get("/books.csv", params={"sql": sql})).text
    assert csv.splitlines()[1] == "51.7,-1.5,3.5,x"


def canned_queries() -> list[str]:
    return list(load_metadata()["databases"]["books"]["queries"])


@pytest.mark.parametrize("name", canned_queries())
async def test_canned_queries_show_their_money_columns_with_two_decimals(ds, name):
    data = (await ds.client.get(f"/books/{name}.json?_shape=objects&_size=max")).json()
    assert data["ok"] is not False, data
    page = await ds.client.get(f"/books/{name}")
    assert page.status_code == 200
    for column in data["columns"]:
        values = [row[column] for row in data["rows"]]
        if is_money_column(column):
            assert cells(page.text, column) == [
                "" if value is None else f"{value:.2f}" for value in values
            ], column
            assert all(value is None or isinstance(value, (int, float)) for value in values)
