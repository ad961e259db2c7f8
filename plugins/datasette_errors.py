"""Datasette's own pages answer a malformed request with a 4xx, never a 500
(books_scraper/web/datasette_errors.py: checked up front, before Datasette runs anything)."""

from datasette import hookimpl

from books_scraper.web.datasette_errors import checked, interrupted


@hookimpl(tryfirst=True)  # innermost: other wrappers (headers...) see these answers too
def asgi_wrapper(datasette):
    return lambda app: checked(datasette, app)


@hookimpl
def handle_exception(datasette, request, exception):
    return interrupted(datasette, request, exception)
