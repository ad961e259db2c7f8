"""Data for models: /api/v1/ml/features and /api/v1/ml/training-data (books_scraper/api/ml.py)."""

from datasette import hookimpl

from books_scraper.api import ml


@hookimpl
def register_routes():
    return ml.ROUTES
