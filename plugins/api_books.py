"""The catalogue: /api/v1/books (list, one, search, top-rated, price-range) and /api/v1/categories."""

from datasette import hookimpl

from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.catalogue import (
    BOOK_SELECT, SORT_CHOICES, BookFilters, book_json, casefold, fts_query, list_query,
)
from books_scraper.api.errors import ApiError, bad_parameter
from books_scraper.api.params import (
    bool_param, choice_param, float_param, int_param, page_param, text_param,
)
from books_scraper.api.web import api_route, books_database, json_response, page_body


@hookimpl
def prepare_connection(conn):
    # For the case-insensitive search: SQLite's LIKE folds ASCII letters only.
    conn.create_function("casefold", 1, casefold, deterministic=True)


@hookimpl
def register_routes():
    # \d+ ids: /books/search, /books/top-rated and /books/price-range are never taken for an id.
    return [
        (r"^/api/v1/books$", api_route(get=list_books)),
        (r"^/api/v1/books/search$", api_route(get=search_books)),
        (r"^/api/v1/books/top-rated$", api_route(get=top_rated)),
        (r"^/api/v1/books/price-range$", api_route(get=price_range)),
        (r"^/api/v1/books/(?P<id>\d{1,18})$", api_route(get=one_book)),
        (r"^/api/v1/categories$", api_route(get=categories)),
    ]


async def list_books(request, datasette):
    args = request.args
    q = text_param(args, "q")
    filters = BookFilters(
        category=text_param(args, "category"),
        min_price=float_param(args, "min_price", minimum=0),
        max_price=float_param(args, "max_price", minimum=0),
        min_rating=int_param(args, "min_rating", minimum=0, maximum=5),
        in_stock=bool_param(args, "in_stock"),
        q=_fts(q) if q else None,
    )
    _check_range(filters.min_price, filters.max_price, "min_price", "max_price")
    sort = choice_param(args, "sort", SORT_CHOICES, "id")
    return await _book_page(request, datasette, filters, sort)


async def search_books(request, datasette):
    title = text_param(request.args, "title")
    category = text_param(request.args, "category")
    if title is None and category is None:
        raise bad_parameter("title", "give title, category or both")
    filters = BookFilters(title_like=title, category_like=category)
    return await _book_page(request, datasette, filters, choice_param(request.args, "sort", SORT_CHOICES, "title"))


async def top_rated(request, datasette):
    page = page_param(request.args, default=10)
    return await _book_page(request, datasette, BookFilters(), "-rating", page)


async def price_range(request, datasette):
    low = float_param(request.args, "min", minimum=0)
    high = float_param(request.args, "max", minimum=0)
    _check_range(low, high, "min", "max")
    filters = BookFilters(min_price=low, max_price=high)
    return await _book_page(request, datasette, filters, choice_param(request.args, "sort", SORT_CHOICES, "price"))


async def one_book(request, datasette):
    book_id = int(request.url_vars["id"])
    db = books_database(datasette)
    row = (await db.execute(f"{BOOK_SELECT} where b.id = :id", {"id": book_id})).first()
    if row is None:
        raise ApiError(404, f"no book has id {book_id}", "book_not_found", id=book_id)
    return json_response(book_json(row))


async def categories(request, datasette):
    rows = await cache.get(books_database(datasette), "category_counts", stats.category_counts)
    page = page_param(request.args, default=1000)
    window = rows[page.offset : page.offset + page.limit]
    return json_response(page_body(request, datasette, "categories", window, len(rows), page))


async def _book_page(request, datasette, filters, sort, page=None):
    page = page or page_param(request.args)
    page_sql, count_sql, params = list_query(filters, sort, page.limit, page.offset)
    db = books_database(datasette)
    total = (await db.execute(count_sql, params)).single_value()
    rows = [book_json(row) for row in (await db.execute(page_sql, params)).rows]
    return json_response(page_body(request, datasette, "books", rows, total, page))


def _check_range(low, high, low_name, high_name):
    if low is not None and high is not None and low > high:
        raise ApiError(400, f"{low_name} must be <= {high_name}", "bad_range")


def _fts(text):
    query = fts_query(text)
    if query is None:
        raise bad_parameter("q", "q has no words to search for")
    return query
