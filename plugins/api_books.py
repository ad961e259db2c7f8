"""The catalogue: /api/v1/books* and /api/v1/categories (books_scraper/api/books.py)."""

from datasette import hookimpl

from books_scraper.api import books


@hookimpl
def prepare_connection(conn):
    books.add_sql_functions(conn)
    books.open_search_indexes(conn)


@hookimpl
def register_routes():
    return books.ROUTES
