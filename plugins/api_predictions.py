"""Model feedback: /api/v1/ml/predictions and /api/v1/ml/predictions/summary, and the summary worked
out in the background as the server starts (books_scraper/api/predictions.py)."""

from datasette import hookimpl

from books_scraper.api import predictions


@hookimpl
def register_routes():
    return predictions.ROUTES


@hookimpl
def startup(datasette):
    async def start():
        predictions.warm_summary(datasette)

    return start
