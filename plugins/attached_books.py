"""The operations database's queries can join the published books (books_scraper/web/attached_books.py)."""

from datasette import hookimpl

from books_scraper.web.attached_books import attach_books


@hookimpl
def prepare_connection(conn, database, datasette):
    attach_books(conn, database, datasette)
