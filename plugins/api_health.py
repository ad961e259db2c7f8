"""GET /api/v1/health (books_scraper/api/health.py)."""

from datasette import hookimpl

from books_scraper.api import health


@hookimpl
def register_routes():
    return health.ROUTES
