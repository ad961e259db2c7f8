"""GET /-/metrics in the Prometheus text format (prometheus-client), its view and its SQL: requests by
route, method and status and their latency (counted by the middleware in observability.py), and,
read from the databases at each scrape, predictions stored, scraping jobs by status and the last
published crawl's figures. Who may read it: the `books-api-metrics` allow block (docs/api.md).
"""

from __future__ import annotations

import json
import sqlite3
import weakref
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from datasette.utils.asgi import Response
from prometheus_client.core import GaugeMetricFamily

from books_scraper.api.errors import ApiError
from books_scraper.api.web import error_response
from books_scraper.web.served_metadata import BOOKS_DATABASE, OPERATIONS_DATABASE

METRICS_ACTION = "books-api-metrics"
PREDICTIONS_SQL = "select model, count(*) as stored from predictions group by model order by model"
JOBS_SQL = "select status, count(*) as jobs from scrape_jobs group by status order by status"
LAST_PUBLISHED_SQL = (
    "select id, started_at, finished_at, pages, books, drops, failures from crawl_runs "
    "where status = 'published' order by id desc limit 1"
)
# Seconds; the API answers in milliseconds, a CSV stream or a heavy ?sql= in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DatabaseFigures:
    """A collector of the families read from the databases just before the text is generated."""

    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily] = []

    def collect(self):
        return list(self.families)


class Metrics:
    """One Datasette instance's registry (tests build many instances in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "books_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "books_http_request_duration_seconds", "Time to answer a request, by route template",
            ["route"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.figures = DatabaseFigures()
        self.registry.register(self.figures)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def exposition(self, families: list[GaugeMetricFamily]) -> bytes:
        # No await between setting the families and generating: no other scrape interleaves.
        self.figures.families = families
        return generate_latest(self.registry)


_metrics: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def metrics_for(datasette) -> Metrics:
    metrics = _metrics.get(datasette)
    if metrics is None:
        metrics = _metrics[datasette] = Metrics()
    return metrics


async def database_families(datasette) -> list[GaugeMetricFamily]:
    families = []
    operations = await _rows(datasette, OPERATIONS_DATABASE, "predictions", PREDICTIONS_SQL)
    if operations is not None:
        stored = GaugeMetricFamily("books_predictions_stored", "Predictions stored, by model", labels=["model"])
        for row in operations:
            stored.add_metric([row["model"]], row["stored"])
        families.append(stored)
    jobs = await _rows(datasette, OPERATIONS_DATABASE, "scrape_jobs", JOBS_SQL)
    if jobs is not None:
        by_status = GaugeMetricFamily("books_scrape_jobs", "Scraping jobs, by status", labels=["status"])
        for row in jobs:
            by_status.add_metric([str(row["status"])], row["jobs"])
        families.append(by_status)
    runs = await _rows(datasette, BOOKS_DATABASE, "crawl_runs", LAST_PUBLISHED_SQL)
    if runs:
        families += last_crawl_families(dict(runs[0]))
    return families


def last_crawl_families(run: dict) -> list[GaugeMetricFamily]:
    """The crawl that built the served books database (its own crawl_runs)."""
    prefix, about = "books_last_crawl_", "of the last published crawl (the data being served)"
    families = [
        GaugeMetricFamily(prefix + "run_id", f"Run number {about}", value=run["id"]),
        GaugeMetricFamily(prefix + "books", f"Books stored {about}", value=run["books"] or 0),
        GaugeMetricFamily(prefix + "pages", f"Pages fetched {about}", value=run["pages"] or 0),
    ]
    started, finished = _timestamp(run["started_at"]), _timestamp(run["finished_at"])
    if started is not None and finished is not None:
        families.append(GaugeMetricFamily(prefix + "duration_seconds", f"Duration {about}", value=finished - started))
    if finished is not None:
        families.append(GaugeMetricFamily(
            prefix + "success_timestamp_seconds", "When the last published crawl finished (Unix time)", value=finished,
        ))
    for column, what in (("drops", "Books dropped as invalid"), ("failures", "Pages that failed")):
        family = GaugeMetricFamily(f"{prefix}{column}", f"{what} {about}, by reason", labels=["reason"])
        for reason, count in sorted(_counts(run[column]).items()):
            family.add_metric([reason], count)
        families.append(family)
    return families


async def _rows(datasette, database: str, table: str, sql: str) -> list | None:
    """The query's rows; None when the database is not served or has no such table (yet)."""
    if database not in datasette.databases:
        return None
    db = datasette.get_database(database)
    try:
        if not await db.table_exists(table):
            return None
        return list(await db.execute(sql))
    except sqlite3.Error:
        return None


def _timestamp(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp() if text else None
    except ValueError:
        return None


def _counts(text: str | None) -> dict[str, int]:
    try:
        counts = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(counts, dict):
        return {}
    return {str(k): v for k, v in counts.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


async def metrics_view(request, datasette):
    """Prometheus text; 401 without credentials and 403 without the role when the allow block asks
    for one; 405 for a method other than GET or HEAD."""
    if request.method not in ("GET", "HEAD"):
        return error_response(ApiError(405, "use GET", "method_not_allowed", headers={"Allow": "GET, HEAD"}))
    if not await datasette.permission_allowed(request.actor, METRICS_ACTION, default=False):
        if request.actor is None:
            return error_response(ApiError(
                401, "authentication required: send Authorization: Bearer <token>", "unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="books-api"'},
            ))
        return error_response(ApiError(403, f"this actor may not {METRICS_ACTION}", "forbidden"))
    body = metrics_for(datasette).exposition(await database_families(datasette))
    return Response(body, status=200, content_type=CONTENT_TYPE_LATEST)


ROUTES = [(r"^/-/metrics$", metrics_view)]
