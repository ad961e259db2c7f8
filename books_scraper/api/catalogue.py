"""Book queries: one SELECT shape for every book response and the WHERE clauses the filters build.

Filters and sorts touch only indexed columns (price, rating, category_id, in_stock, title) or the FTS
table, so lists stay cheap whatever the catalogue's size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from books_scraper.storage import BOOK_COLUMNS

BOOK_SELECT = (
    "select "
    + ", ".join(f"b.{name}" for name in BOOK_COLUMNS)
    + ", c.name as category, c.slug as category_slug"
    + " from books b join categories c on c.id = b.category_id"
)
SORTS = {"id": "b.id", "price": "b.price", "rating": "b.rating", "title": "b.title"}
SORT_CHOICES = [prefix + name for name in SORTS for prefix in ("", "-")]


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
