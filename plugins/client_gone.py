"""A dropped CSV export stops (books_scraper/web/client_gone.py)."""

from datasette import hookimpl

from books_scraper.web.client_gone import stop_when_client_goes


@hookimpl
def asgi_wrapper():
    return stop_when_client_goes
