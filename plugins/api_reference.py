"""GET /api/v1 and /api/v1/docs (books_scraper/api/reference.py)."""

from datasette import hookimpl

from books_scraper.api import reference


@hookimpl
def register_routes():
    return reference.ROUTES
