"""Rate limits and CORS for /api/v1 (books_scraper/api/protection.py)."""

from datasette import hookimpl

from books_scraper.api.protection import protection


@hookimpl(tryfirst=True)  # inner: the security headers and any logging wrapper see its 429s too
def asgi_wrapper(datasette):
    return protection(datasette)
