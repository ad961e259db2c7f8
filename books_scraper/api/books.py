"""The catalogue: /api/v1/books (list, one, search, top-rated, price-range) and /api/v1/categories,
their views and their SQL.

One SELECT shape for every book response (training data reads it too) and the WHERE clauses the
filters build. Filters and sorts touch only indexed columns (price, rating, category_id, in_stock,
title) or full-text tables (books_fts for q, title_search's trigram index for title), and pages follow
a keyset cursor (web.keyset_sql), so lists stay cheap whatever the catalogue's size. Totals come from
the aggregates computed at publication (category_figures) when only categories filter, else from a
count capped at web.COUNT_CAP rows.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, replace

from books_scraper.api.errors import ApiError
from books_scraper.api.params import BOOK_SORTS, TOP_RATED_SORT, page_of, query_values
from books_scraper.api.web import (
    COUNT_CAP, Keyset, api_route, books_database, cursor_page_body, json_response, keyset_sql, next_cursor,
    page_body,
)
from books_scraper.storage import BOOK_COLUMNS
from books_scraper.title_search import title_condition

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
# /api/v1/categories: every category with its book count, from the figures computed at publication.
CATEGORY_COUNTS_SELECT = (
    "select category_id as id, name, slug, url, books as book_count from category_figures order by name"
)
# Totals without counting books: the per-category figures (categories match as the filters do).
CATEGORY_TOTALS = {
    "category": "select coalesce(sum(books), 0) from category_figures"
    " where casefold(name) = casefold(:category) or casefold(slug) = casefold(:category)",
    "category_like": "select coalesce(sum(books), 0) from category_figures"
    " where casefold(name) like casefold(:category_like) escape '\\'",
    None: "select coalesce(sum(books), 0) from category_figures",
}


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


def where_clause(filters: BookFilters) -> tuple[list[str], dict]:
    """(conditions to AND, their params)."""
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
        condition, title_params = title_condition(filters.title_like)
        conditions.append(condition)
        params.update(title_params)
    for name, condition in COMPARISONS.items():
        value = getattr(filters, name)
        if value is not None:
            conditions.append(condition)
            params[name] = int(value) if isinstance(value, bool) else value
    if filters.q is not None:
        conditions.append("b.id in (select rowid from books_fts where books_fts match :q)")
        params["q"] = filters.q
    return conditions, params


def keyset_of(sort: str) -> Keyset:
    """'-price' -> by b.price descending, then b.id descending: the id makes pages stable."""
    name = sort.lstrip("-")
    column = None if name == "id" else f"b.{name}"  # each an indexed, NOT NULL column
    return Keyset(sort, column, None if column is None else name, descending=sort.startswith("-"))


def list_query(filters: BookFilters, keyset: Keyset, page) -> tuple[str, dict]:
    """(page SQL, params) for a filtered, sorted page of books (limit + 1 rows)."""
    conditions, params = where_clause(filters)
    page_sql, page_params = keyset_sql(BOOK_SELECT, conditions, keyset, page)
    return page_sql, {**params, **page_params}


def total_query(filters: BookFilters) -> tuple[str, dict, bool]:
    """(SQL of the total, params, whether it is exact): a category figure when only categories
    filter, else a count that stops at COUNT_CAP + 1 rows (answered as COUNT_CAP, not exact)."""
    conditions, params = where_clause(filters)
    if replace(filters, category=None, category_like=None) == BookFilters():
        key = "category" if filters.category is not None else "category_like" if filters.category_like else None
        return CATEGORY_TOTALS[key], params, True
    where = " where " + " and ".join(conditions)
    return f"select count(*) from (select 1 from books b{where} limit {COUNT_CAP + 1})", params, False


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


async def list_books(request, datasette):
    args = query_values(LIST, request.args)
    filters = BookFilters(
        category=args["category"],
        min_price=args["min_price"],
        max_price=args["max_price"],
        min_rating=args["min_rating"],
        in_stock=args["in_stock"],
        q=fts_query(args["q"]) if args["q"] else None,
    )
    return await _book_page(request, datasette, LIST, filters, args)


async def search_books(request, datasette):
    args = query_values(SEARCH, request.args)
    filters = BookFilters(title_like=args["title"], category_like=args["category"])
    return await _book_page(request, datasette, SEARCH, filters, args)


async def top_rated(request, datasette):
    args = query_values(TOP_RATED, request.args)
    return await _book_page(request, datasette, TOP_RATED, BookFilters(), {**args, "sort": TOP_RATED_SORT})


async def price_range(request, datasette):
    args = query_values(PRICE_RANGE, request.args)
    filters = BookFilters(min_price=args["min"], max_price=args["max"])
    return await _book_page(request, datasette, PRICE_RANGE, filters, args)


async def one_book(request, datasette):
    book_id = int(request.url_vars["id"])
    db = books_database(datasette)
    row = (await db.execute(f"{BOOK_SELECT} where b.id = :id", {"id": book_id})).first()
    if row is None:
        raise ApiError(404, f"no book has id {book_id}", "book_not_found", id=book_id)
    return json_response(book_json(row))


async def categories(request, datasette):
    page = page_of(query_values("/api/v1/categories", request.args))
    rows = [dict(row) for row in (await books_database(datasette).execute(CATEGORY_COUNTS_SELECT)).rows]
    window = rows[page.offset : page.offset + page.limit]
    return json_response(page_body(request, datasette, "categories", window, len(rows), page))


async def _book_page(request, datasette, path: str, filters: BookFilters, args: dict):
    page = page_of(args, path)
    keyset = keyset_of(args["sort"])
    page_sql, params = list_query(filters, keyset, page)
    total_sql, total_params, exact = total_query(filters)
    db = books_database(datasette)
    total = (await db.execute(total_sql, total_params)).single_value()
    fetched = [book_json(row) for row in (await db.execute(page_sql, params)).rows]
    rows, after = next_cursor(path, keyset, fetched, page)
    if not exact:  # the count stopped at COUNT_CAP + 1 rows: more than COUNT_CAP match
        exact, total = total <= COUNT_CAP, min(total, COUNT_CAP)
    return json_response(cursor_page_body(request, datasette, "books", rows, total, page, after, exact))


LIST, SEARCH = "/api/v1/books", "/api/v1/books/search"
TOP_RATED, PRICE_RANGE = "/api/v1/books/top-rated", "/api/v1/books/price-range"


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
