"""GET /api/v1/stats/overview and /api/v1/stats/categories (books_scraper/api/stats.py)."""

from datasette import hookimpl

from books_scraper.api import stats


@hookimpl
def register_routes():
    return stats.ROUTES
