"""The catalogue: /api/v1/books (list, one, search, top-rated, price-range) and /api/v1/categories,
their views and their SQL.

One SELECT shape for every book response (training data reads it too) and the WHERE clauses the
filters build. Filters and sorts touch only indexed columns (price, rating, category_id, in_stock,
title) or the FTS table, so lists stay cheap whatever the catalogue's size.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from books_scraper.api.cache import cache
from books_scraper.api.errors import ApiError
from books_scraper.api.params import BOOK_SORTS, page_of, query_values
from books_scraper.api.web import api_route, books_database, json_response, page_body
from books_scraper.storage import BOOK_COLUMNS

BOOK_SELECT = (
    "select "
    + ", ".join(f"b.{name}" for name in BOOK_COLUMNS)
    + ", c.name as category, c.slug as category_slug"
    + " from books b join categories c on c.id = b.category_id"
)
# Every category with its book figures, empty categories included, by name: /categories and
# /stats/categories are two views of this one query.
CATEGORY_FIGURES_SELECT = (
    "select c.id, c.name, c.slug, c.url, count(b.id), avg(b.price), min(b.price), max(b.price),"
    " avg(b.rating) from categories c left join books b on b.category_id = c.id"
    " group by c.id order by c.name"
)
SORTS = {name: f"b.{name}" for name in BOOK_SORTS}  # each an indexed column


# Filters that compare one indexed column with the parameter of the same name.
COMPARISONS = {
    "min_price": "b.price >= :min_price",
    "max_price": "b.price <= :max_price",
    "min_rating": "b.rating >= :min_rating",
    "in_stock": "b.in_stock = :in_stock",
}


@dataclass(frozen=True)
class BookFilters:
    category: str | None = None  # exact name or slug, any case (Unicode case folding)
    category_like: str | None = None  # partial name, any case (Unicode case folding)
    title_like: str | None = None  # partial title, any case (Unicode case folding)
    min_price: float | None = None
    max_price: float | None = None
    min_rating: int | None = None
    in_stock: bool | None = None
    q: str | None = None  # full-text, already an FTS5 query


def where_clause(filters: BookFilters) -> tuple[str, dict]:
    conditions: list[str] = []
    params: dict = {}
    if filters.category is not None:
        conditions.append(
            "b.category_id in (select id from categories"
            " where casefold(name) = casefold(:category) or casefold(slug) = casefold(:category))"
        )
        params["category"] = filters.category
    if filters.category_like is not None:
        conditions.append(
            "b.category_id in (select id from categories"
            " where casefold(name) like casefold(:category_like) escape '\\')"
        )
        params["category_like"] = like_pattern(filters.category_like)
    if filters.title_like is not None:
        conditions.append("casefold(b.title) like casefold(:title_like) escape '\\'")
        params["title_like"] = like_pattern(filters.title_like)
    for name, condition in COMPARISONS.items():
        value = getattr(filters, name)
        if value is not None:
            conditions.append(condition)
            params[name] = int(value) if isinstance(value, bool) else value
    if filters.q is not None:
        conditions.append("b.id in (select rowid from books_fts where books_fts match :q)")
        params["q"] = filters.q
    return (" where " + " and ".join(conditions)) if conditions else "", params


def order_clause(sort: str) -> str:
    """'-price' -> order by b.price desc, b.id: the id makes pages stable."""
    column = SORTS[sort.lstrip("-")]
    direction = "desc" if sort.startswith("-") else "asc"
    return f" order by {column} {direction}, b.id {direction}"


def list_query(filters: BookFilters, sort: str, limit: int, offset: int) -> tuple[str, str, dict]:
    """(page SQL, count SQL, params) for a filtered, sorted page of books."""
    where, params = where_clause(filters)
    page_sql = f"{BOOK_SELECT}{where}{order_clause(sort)} limit :limit offset :offset"
    count_sql = f"select count(*) from books b{where}"
    return page_sql, count_sql, {**params, "limit": limit, "offset": offset}


def casefold(text):
    """SQL casefold(): Unicode case folding, where SQLite's lower() and LIKE fold ASCII only."""
    return text.casefold() if isinstance(text, str) else text


def add_sql_functions(conn: sqlite3.Connection) -> None:
    """For the case-insensitive search: SQLite's LIKE folds ASCII letters only."""
    conn.create_function("casefold", 1, casefold, deterministic=True)


def like_pattern(text: str) -> str:
    """A case-insensitive 'contains' pattern with LIKE's wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fts_query(text: str) -> str | None:
    """Words of free text as an FTS5 query matching all of them; None when there are no words."""
    words = re.findall(r"\w+", text)
    return " ".join(f'"{word}"' for word in words) or None


def book_json(row) -> dict:
    book = dict(row)
    book["in_stock"] = bool(book["in_stock"]) if book["in_stock"] is not None else None
    return book


def category_figures(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute(CATEGORY_FIGURES_SELECT).fetchall()


def category_counts(conn: sqlite3.Connection) -> list[dict]:
    return [
        {"id": id_, "name": name, "slug": slug, "url": url, "book_count": count}
        for id_, name, slug, url, count, *_figures in category_figures(conn)
    ]


async def list_books(request, datasette):
    args = query_values("/api/v1/books", request.args)
    filters = BookFilters(
        category=args["category"],
        min_price=args["min_price"],
        max_price=args["max_price"],
        min_rating=args["min_rating"],
        in_stock=args["in_stock"],
        q=fts_query(args["q"]) if args["q"] else None,
    )
    return await _book_page(request, datasette, filters, args)


async def search_books(request, datasette):
    args = query_values("/api/v1/books/search", request.args)
    filters = BookFilters(title_like=args["title"], category_like=args["category"])
    return await _book_page(request, datasette, filters, args)


async def top_rated(request, datasette):
    args = query_values("/api/v1/books/top-rated", request.args)
    return await _book_page(request, datasette, BookFilters(), {**args, "sort": "-rating"})


async def price_range(request, datasette):
    args = query_values("/api/v1/books/price-range", request.args)
    filters = BookFilters(min_price=args["min"], max_price=args["max"])
    return await _book_page(request, datasette, filters, args)


async def one_book(request, datasette):
    book_id = int(request.url_vars["id"])
    db = books_database(datasette)
    row = (await db.execute(f"{BOOK_SELECT} where b.id = :id", {"id": book_id})).first()
    if row is None:
        raise ApiError(404, f"no book has id {book_id}", "book_not_found", id=book_id)
    return json_response(book_json(row))


async def categories(request, datasette):
    page = page_of(query_values("/api/v1/categories", request.args))
    rows = await cache.get(books_database(datasette), "category_counts", category_counts)
    window = rows[page.offset : page.offset + page.limit]
    return json_response(page_body(request, datasette, "categories", window, len(rows), page))


async def _book_page(request, datasette, filters, args):
    page = page_of(args)
    page_sql, count_sql, params = list_query(filters, args["sort"], page.limit, page.offset)
    db = books_database(datasette)
    total = (await db.execute(count_sql, params)).single_value()
    rows = [book_json(row) for row in (await db.execute(page_sql, params)).rows]
    return json_response(page_body(request, datasette, "books", rows, total, page))


# [0-9]+ ids (not \d, which takes any Unicode digit): /books/search, /books/top-rated and
# /books/price-range are never taken for an id.
ROUTES = [
    (r"^/api/v1/books$", api_route(get=list_books)),
    (r"^/api/v1/books/search$", api_route(get=search_books)),
    (r"^/api/v1/books/top-rated$", api_route(get=top_rated)),
    (r"^/api/v1/books/price-range$", api_route(get=price_range)),
    (r"^/api/v1/books/(?P<id>[0-9]{1,18})$", api_route(get=one_book)),
    (r"^/api/v1/categories$", api_route(get=categories)),
]
