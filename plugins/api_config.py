"""The books-api configuration, validated once at startup: a bad key stops the server with one line
(books_scraper/api/config.py)."""

from datasette import hookimpl

from books_scraper.api.config import configure


@hookimpl
def startup(datasette):
    configure(datasette)
