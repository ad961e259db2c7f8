"""GET /api/v1/stats/overview and /api/v1/stats/categories, computed once per published database."""

from datasette import hookimpl

from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.params import page_param
from books_scraper.api.web import api_route, books_database, json_response, page_body


@hookimpl
def register_routes():
    return [
        (r"^/api/v1/stats/overview$", api_route(get=overview)),
        (r"^/api/v1/stats/categories$", api_route(get=categories)),
    ]


async def overview(request, datasette):
    return json_response(await cache.get(books_database(datasette), "overview", stats.overview))


async def categories(request, datasette):
    rows = await cache.get(books_database(datasette), "category_stats", stats.category_stats)
    page = page_param(request.args, default=1000)
    body = page_body(request, datasette, "categories", rows[page.offset : page.offset + page.limit], len(rows), page)
    return json_response(body)
