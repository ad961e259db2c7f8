"""The catalogue: /api/v1/books (list, one, search, top-rated, price-range) and /api/v1/categories."""

from datasette import hookimpl

from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.catalogue import BOOK_SELECT, BookFilters, book_json, casefold, fts_query, list_query
from books_scraper.api.errors import ApiError
from books_scraper.api.params import page_of, query_values
from books_scraper.api.web import api_route, books_database, json_response, page_body


@hookimpl
def prepare_connection(conn):
    # For the case-insensitive search: SQLite's LIKE folds ASCII letters only.
    conn.create_function("casefold", 1, casefold, deterministic=True)


@hookimpl
def register_routes():
    # [0-9]+ ids (not \d, which takes any Unicode digit): /books/search, /books/top-rated and
    # /books/price-range are never taken for an id.
    return [
        (r"^/api/v1/books$", api_route(get=list_books)),
        (r"^/api/v1/books/search$", api_route(get=search_books)),
        (r"^/api/v1/books/top-rated$", api_route(get=top_rated)),
        (r"^/api/v1/books/price-range$", api_route(get=price_range)),
        (r"^/api/v1/books/(?P<id>[0-9]{1,18})$", api_route(get=one_book)),
        (r"^/api/v1/categories$", api_route(get=categories)),
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
    rows = await cache.get(books_database(datasette), "category_counts", stats.category_counts)
    window = rows[page.offset : page.offset + page.limit]
    return json_response(page_body(request, datasette, "categories", window, len(rows), page))


async def _book_page(request, datasette, filters, args):
    page = page_of(args)
    page_sql, count_sql, params = list_query(filters, args["sort"], page.limit, page.offset)
    db = books_database(datasette)
    total = (await db.execute(count_sql, params)).single_value()
    rows = [book_json(row) for row in (await db.execute(page_sql, params)).rows]
    return json_response(page_body(request, datasette, "books", rows, total, page))

