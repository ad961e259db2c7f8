"""Model feedback: /api/v1/ml/predictions and /api/v1/ml/predictions/summary
(books_scraper/api/predictions.py)."""

from datasette import hookimpl

from books_scraper.api import predictions


@hookimpl
def register_routes():
    return predictions.ROUTES
