"""Limits on what one query can make SQLite and Datasette build (books_scraper/web/query_limits.py)."""

from datasette import hookimpl

from books_scraper.web.query_limits import limit_connection


@hookimpl
def prepare_connection(conn):
    limit_connection(conn)
