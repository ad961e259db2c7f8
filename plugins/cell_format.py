"""Prices with two decimals in the HTML pages (books_scraper/web/cell_format.py)."""

from datasette import hookimpl

from books_scraper.web.cell_format import money_cell


@hookimpl
def render_cell(value, column):
    return money_cell(value, column)
