"""GET /api/v1/health, its view and its SQL: is the books database reachable, how many books, which
crawl built it and the operations journal's latest attempt. GET /api/v1/ready: 503 until a books
database is published and readable (for a load balancer or an orchestrator's readiness probe)."""

from __future__ import annotations

import sqlite3

from books_scraper.api import stats
from books_scraper.api.errors import ApiError
from books_scraper.api.web import api_route, books_database, json_response
from books_scraper.web.served_metadata import OPERATIONS_DATABASE

CRAWL_COLUMNS = "id, started_at, finished_at, status, books"
LAST_PUBLISHED_SQL = (
    f"select {CRAWL_COLUMNS} from crawl_runs where status = 'published' order by id desc limit 1"
)
LATEST_ATTEMPT_SQL = f"select {CRAWL_COLUMNS} from crawl_runs order by id desc limit 1"
# The count written at publication (books_scraper/aggregates.py): no count over a large catalogue.
READY_SQL = "select count from table_counts where name = 'books'"


async def health(request, datasette):
    db = books_database(datasette)
    try:
        overview = await stats.figures(datasette, "overview", stats.overview)
    except sqlite3.Error as error:  # not (yet) a books database
        raise ApiError(503, f"the books database is unreachable: {error}", "database_unavailable")
    return json_response(
        {
            "status": "ok",
            "database": {"name": db.name, "reachable": True},
            "books": overview["total_books"],
            # The served file's own runs: a newer crawl is only served after a restart.
            "last_crawl": await first_row(db, LAST_PUBLISHED_SQL),
            # The operator's journal: the latest attempt, whatever its outcome or whether it is served.
            "latest_crawl_attempt": await latest_attempt(datasette),
        }
    )


async def ready(request, datasette):
    """Ready once the served books database has its books and their counts (a crawl published it)."""
    try:
        db = books_database(datasette)
        row = (await db.execute(READY_SQL)).first() if await db.table_exists("table_counts") else None
    except (ApiError, sqlite3.Error):
        row = None
    books = row[0] if row else None
    if books is None:
        raise ApiError(503, "not ready: no books database is published yet", "not_ready")
    return json_response({"status": "ready", "books": books})


async def latest_attempt(datasette):
    if OPERATIONS_DATABASE not in datasette.databases:
        return None
    return await first_row(datasette.get_database(OPERATIONS_DATABASE), LATEST_ATTEMPT_SQL)


async def first_row(db, sql):
    if not await db.table_exists("crawl_runs"):
        return None
    row = (await db.execute(sql)).first()
    return dict(row) if row is not None else None


ROUTES = [
    (r"^/api/v1/health$", api_route(get=health)),
    (r"^/api/v1/ready$", api_route(get=ready)),
]
