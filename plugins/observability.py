"""Logs and metrics: JSON or text logging set up at startup, one log line and the metrics per request
(books_scraper/web/observability.py), GET /-/metrics (books_scraper/web/metrics.py)."""

from datasette import hookimpl

from books_scraper.web import metrics, observability


@hookimpl
def startup():
    observability.configure_logging()


@hookimpl(trylast=True)  # outermost: it sees every answer, the other wrappers' included
def asgi_wrapper(datasette):
    return lambda app: observability.observed(datasette, app, metrics.metrics_for(datasette))


@hookimpl
def permission_allowed(actor):
    observability.note_actor(actor)  # the request's actor, once Datasette has resolved it; no opinion


@hookimpl
def register_routes():
    return metrics.ROUTES
