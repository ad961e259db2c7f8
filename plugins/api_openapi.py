"""GET /api/v1/openapi.json (books_scraper/api/openapi.py)."""

from datasette import hookimpl

from books_scraper.api import openapi


@hookimpl
def register_routes():
    return openapi.ROUTES
