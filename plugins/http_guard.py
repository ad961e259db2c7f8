"""Security headers on every answer, and a clean 401 for a malformed Authorization header."""

from datasette import hookimpl

from books_scraper.web.guard import guard


@hookimpl
def asgi_wrapper():
    return guard
