"""GET /api/v1/health: is the books database reachable, how many books, when the last crawl published."""

import sqlite3

from datasette import hookimpl

from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.errors import ApiError
from books_scraper.api.web import api_config, api_route, books_database, json_response

LAST_CRAWL_SQL = (
    "select id, started_at, finished_at, status, books from crawl_runs"
    " where status = 'published' order by id desc limit 1"
)


@hookimpl
def register_routes():
    return [(r"^/api/v1/health$", api_route(get=health))]


async def health(request, datasette):
    db = books_database(datasette)
    try:
        overview = await cache.get(db, "overview", stats.overview)
    except sqlite3.Error as error:  # not (yet) a books database
        raise ApiError(503, f"the books database is unreachable: {error}", "database_unavailable")
    return json_response(
        {
            "status": "ok",
            "database": {"name": db.name, "reachable": True},
            "books": overview["total_books"],
            "last_crawl": await last_crawl(datasette, db),
        }
    )


async def last_crawl(datasette, books_db):
    """The operator's journal knows every run; the books database only those that built it."""
    candidates = []
    ops_name = api_config(datasette).operations_database
    if ops_name in datasette.databases:
        candidates.append(datasette.get_database(ops_name))
    candidates.append(books_db)
    for db in candidates:
        if not await db.table_exists("crawl_runs"):
            continue
        row = (await db.execute(LAST_CRAWL_SQL)).first()
        if row is not None:
            return dict(row)
    return None
