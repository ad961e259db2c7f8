"""Catalogue aggregates: GET /api/v1/stats/overview and /api/v1/stats/categories, their views and
their SQL, read from the figures stored at publication and kept once per published database (cache.py).

/stats/categories is a bare list, the shape the Flask-era clients read (one row per category: ~50)."""

from __future__ import annotations

import sqlite3

from books_scraper.aggregates import CATEGORY_FIGURES_SELECT
from books_scraper.api.cache import cache
from books_scraper.api.errors import ApiError
from books_scraper.api.web import api_route, books_database, json_response

# Both read the aggregates stored at publication (books_scraper/aggregates.py): ~50 category rows
# and ~250 (category, rating) rows, whatever the catalogue's size.
OVERVIEW_SQL = (
    "select coalesce(sum(books), 0), total(sum_price), min(min_price), max(max_price),"
    " coalesce(sum(in_stock), 0), coalesce(sum(total_stock), 0), count(*) from category_figures"
)
RATINGS_SQL = "select rating, sum(books) from rating_figures group by rating"


def _round(value: float | None, places: int = 2) -> float | None:
    return None if value is None else round(value, places)


def overview(conn: sqlite3.Connection) -> dict:
    total, sum_price, low, high, in_stock, stock, categories = conn.execute(OVERVIEW_SQL).fetchone()
    distribution = {str(stars): 0 for stars in range(1, 6)}
    for rating, count in conn.execute(RATINGS_SQL):
        distribution[str(rating)] = count
    return {
        "total_books": total,
        "total_categories": categories,
        "average_price": _round(sum_price / total) if total else None,
        "min_price": low,
        "max_price": high,
        "rating_distribution": distribution,
        "in_stock": in_stock,
        "out_of_stock": total - in_stock,
        "total_stock": stock,
    }


def category_stats(conn: sqlite3.Connection) -> list[dict]:
    return [
        {
            "category": name,
            "category_id": id_,
            "slug": slug,
            "total_books": count,
            "average_price": _round(average),
            "min_price": low,
            "max_price": high,
            "average_rating": _round(rating),
        }
        for id_, name, slug, _url, count, average, low, high, rating in conn.execute(CATEGORY_FIGURES_SELECT)
    ]


async def figures(datasette, name: str, compute):
    """compute(conn) on the books database, once per version; 503 when the file has no aggregates
    (published by an older version and served by a plain `datasette serve`: serve rebuilds it)."""
    try:
        return await cache.get(books_database(datasette), name, compute)
    except sqlite3.OperationalError as error:
        if "no such table" not in str(error):
            raise
        raise ApiError(
            503, f"the books database has no aggregates ({error}): it was published by an older version;"
            " python -m books_scraper.serve brings it up to date", "database_unavailable",
        ) from None


async def overview_view(request, datasette):
    return json_response(await figures(datasette, "overview", overview))


async def categories_view(request, datasette):
    return json_response(await figures(datasette, "category_stats", category_stats))


ROUTES = [
    (r"^/api/v1/stats/overview$", api_route(get=overview_view)),
    (r"^/api/v1/stats/categories$", api_route(get=categories_view)),
]
