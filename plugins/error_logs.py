"""No request's headers (and so no token) in the server's log when Datasette answers an error."""

from datasette import hookimpl

from books_scraper.web.datasette_internals import no_rich_tracebacks


@hookimpl
def startup():
    no_rich_tracebacks()
