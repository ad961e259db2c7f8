"""GET /api/v1/stats/overview and /api/v1/stats/categories, computed once per published database.

/stats/categories is a bare list, the shape the Flask-era clients read (one row per category: ~50)."""

from datasette import hookimpl

from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.web import api_route, books_database, json_response


@hookimpl
def register_routes():
    return [
        (r"^/api/v1/stats/overview$", api_route(get=overview)),
        (r"^/api/v1/stats/categories$", api_route(get=categories)),
    ]


async def overview(request, datasette):
    return json_response(await cache.get(books_database(datasette), "overview", stats.overview))


async def categories(request, datasette):
    return json_response(await cache.get(books_database(datasette), "category_stats", stats.category_stats))
