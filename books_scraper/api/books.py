"""The catalogue: /api/v1/books (list, one, search, top-rated, price-range) and /api/v1/categories,
their views and their SQL.

One SELECT shape for every book response (training data reads it too) and the conditions the
filters build. Filters and sorts touch only indexed columns (price, rating, category_id, in_stock,
title) or full-text tables (books_fts for q, title_search's trigram index for title), and pages follow
a keyset cursor (web.keyset_sql), so lists stay cheap whatever the catalogue's size. Totals come from
the aggregates computed at publication (category_figures) when only categories filter, else from a
count capped at web.COUNT_CAP rows; that count also chooses the page's plan (list_query): few matches
are sorted, many are found by walking the sort's index. A title search alone sorted by title reads its
index in title order, whatever the count (title_order_query).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from dataclasses import dataclass, replace

from books_scraper.api.errors import ApiError
from books_scraper.api.params import BOOK_SORTS, TOP_RATED_SORT, page_of, query_values
from books_scraper.api.web import (
    COUNT_CAP, Keyset, api_route, books_database, cursor_page_body, json_response, keyset_sql, next_cursor,
    TooManySteps, page_body, read_rows,
)
from books_scraper.storage import BOOK_COLUMNS
from books_scraper.title_search import FOLDED_TITLES, TITLE_INDEX, title_match


def book_select(books: str = "books b") -> str:
    """The one book SELECT; `books` may carry an index hint (`books b indexed by ...`)."""
    columns = ", ".join(f"b.{name}" for name in BOOK_COLUMNS)
    return f"select {columns}, c.name as category, c.slug as category_slug from {books}" \
        " join categories c on c.id = b.category_id"


BOOK_SELECT = book_select()
# The index each sort walks (storage.BOOK_INDEXES, as sqlite-utils names them); the id is the rowid.
SORT_INDEXES = {"price": "idx_books_price", "rating": "idx_books_rating", "title": "idx_books_title"}
# Every filtered and sorted column by id: a book found by id is tested without reading its wide row.
NARROW_INDEX = "idx_books_id_category_id_rating_price_in_stock_title"
FTS_TABLE = "books_fts"  # the books' full-text index (sqlite-utils' enable_fts: title, description)
# A list filtered by category alone sorts its books up to this many (the count is the category's
# figure), read from the category index: a walk of the price or title index could pass many books of
# other categories first.
CATEGORY_GATHER_MAX = 50_000
# The most SQLite instructions a walk of a sort's index may take (about 7 a book: some 13,000 books,
# 0.1 s at 1M) before the page sorts the matching ids instead, which costs at most about 0.2 s at 1M
# whatever matches. Many matches usually fill a page in a short walk, but not when they lie together
# far along the sort's order (a price range sorted by title meets 200,000 other books first at 1M).
WALK_STEPS = 100_000
# Then the matching ids are sorted when there are at most this many (sorting 27,000 by title takes
# 0.2 s at 1M, 800,000 take 5 s); more than that lie along the whole order and the walk goes on.
GATHER_MAX = 100_000
# A category and a lowest rating sorted by price: this index holds each (category, rating) run in
# price order, so a page is the merge of each run's first rows (rating_runs_query), read in a
# fraction of a millisecond however many books the category has. Ratings are 1 to 5 (pipelines).
RATING_RUNS_INDEX = "idx_books_category_id_rating_price_title"
RATINGS = range(1, 6)
# Columns of a few distinct values: their index is worth less than any other filter's.
WEAK_COLUMNS = {"rating", "in_stock"}
# /api/v1/categories: every category with its book count, from the figures computed at publication.
CATEGORY_COUNTS_SELECT = (
    "select category_id as id, name, slug, url, books as book_count from category_figures order by name"
)
# The categories a filter names: exact name or slug, or part of the name, in any case (Unicode case
# folding), tested on categories and on the figures computed at publication alike (both have the names).
CATEGORY_MATCHES = {
    "category": "casefold(name) = casefold(:category) or casefold(slug) = casefold(:category)",
    "category_like": "casefold(name) like casefold(:category_like) escape '\\'",
}
# Totals without counting books: the per-category figures (categories match as the filters do) ...
CATEGORY_TOTALS = {
    **{key: f"select coalesce(sum(books), 0) from category_figures where {match}"
       for key, match in CATEGORY_MATCHES.items()},
    None: "select coalesce(sum(books), 0) from category_figures",
}
# ... and, with a lowest rating, the (category, rating) figures.
RATED_TOTALS = {
    **{key: "select coalesce(sum(books), 0) from rating_figures where rating >= :min_rating and category_id in"
       f" (select category_id from category_figures where {match})" for key, match in CATEGORY_MATCHES.items()},
    None: "select coalesce(sum(books), 0) from rating_figures where rating >= :min_rating",
}


# Filters that compare one indexed column with the parameter of the same name: (column, test).
COMPARISONS = {
    "min_price": ("price", "{plus}b.price >= :min_price"),
    "max_price": ("price", "{plus}b.price <= :max_price"),
    "min_rating": ("rating", "{plus}b.rating >= :min_rating"),
    "in_stock": ("in_stock", "{plus}b.in_stock = :in_stock"),
}
CATEGORY_TESTS = {
    key: f"{{plus}}b.category_id in (select id from categories where {match})"
    for key, match in CATEGORY_MATCHES.items()
}


@dataclass(frozen=True)
class Condition:
    """One filter as SQL on a book row `b`."""

    test: str  # `{plus}` marks where SQLite may be told not to use the column's index (a unary +)
    column: str | None = None  # the books column it compares, if one
    matching_ids: str | None = None  # a full-text filter's `select id` of every match
    ids_in_order: bool = False  # matching_ids reads one index in id order: a page by id is its first rows
    positions: str | None = None  # the title index's match positions in title order (title_search)

    def sql(self, use_index: bool = True) -> str:
        return self.test.replace("{plus}", "" if use_index else "+")


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


def where_clause(filters: BookFilters) -> tuple[list[Condition], dict]:
    """(conditions to AND, their params)."""
    conditions: list[Condition] = []
    params: dict = {}
    if filters.category is not None:
        conditions.append(Condition(CATEGORY_TESTS["category"], "category_id"))
        params["category"] = filters.category
    if filters.category_like is not None:
        conditions.append(Condition(CATEGORY_TESTS["category_like"], "category_id"))
        params["category_like"] = like_pattern(filters.category_like)
    if filters.title_like is not None:
        title = title_match(filters.title_like)
        conditions.append(Condition(title.test, matching_ids=title.matching_ids, positions=title.positions))
        params.update(title.params)
    for name, (column, test) in COMPARISONS.items():
        value = getattr(filters, name)
        if value is not None:
            conditions.append(Condition(test, column))
            params[name] = int(value) if isinstance(value, bool) else value
    if filters.q is not None:
        conditions.append(Condition(
            "exists (select 1 from books_fts where rowid = b.id and books_fts match :q)",
            matching_ids="select rowid as id from books_fts where books_fts match :q",
            ids_in_order=True,
        ))
        params["q"] = filters.q
    return conditions, params


def keyset_of(sort: str) -> Keyset:
    """'-price' -> by b.price descending, then b.id descending: the id makes pages stable."""
    name = sort.lstrip("-")
    column = None if name == "id" else f"b.{name}"  # each an indexed, NOT NULL column
    return Keyset(sort, column, None if column is None else name, descending=sort.startswith("-"))


# How a full-text filter meets the other filters (meeting_plan picks): a set of its matches that an
# index of the others is walked past; a set of the books the others pass, its matches streamed past
# it; or, both sides large, its matches streamed and each book tested (stops at COUNT_CAP + 1).
MATCHES_SET, OTHERS_SET, STREAM = "matches-set", "others-set", "stream"


def matching_ids_sql(
    conditions: list[Condition], sort_column: str | None = None, plan: str = MATCHES_SET, cap: int | None = COUNT_CAP
) -> str:
    """The ids of the books that pass every condition, at most cap + 1 of them (all with no cap),
    found the
    cheap way, each with its `sort_column` if one is named (read from the index that finds them when
    it holds the column, else from the book). A full-text filter alone: its index's matches,
    streamed. Else by an index of the other filters (not a weak one's when another filter has one),
    each book tested there; a full-text filter meets them by `plan`: only the smaller side is built
    as a set (the larger read once, streamed), and when both are large a dense intersection is found
    by streaming the matches, which stops at the cap."""
    driver = next((c for c in conditions if c.matching_ids), None)
    limit = f" limit {cap + 1}" if cap is not None else ""
    sort_value = f", b.{sort_column} as {sort_column}" if sort_column else ""
    if driver is not None and len(conditions) == 1:  # the index's matches alone: no book to read
        if sort_column is None:
            return f"select id from ({driver.matching_ids}){limit}"
        return f"select b.id as id{sort_value} from books b where b.id in ({driver.matching_ids}){limit}"
    others = [c for c in conditions if c is not driver]
    strong = any(c.column not in WEAK_COLUMNS for c in others)
    tests = [c.sql(use_index=not (strong and c.column in WEAK_COLUMNS)) for c in others]
    if driver is None or plan == MATCHES_SET:
        if driver is not None:
            tests.append(f"+b.id in ({driver.matching_ids})")  # +: a set to look in, not ids to visit
        return f"select b.id as id{sort_value} from books b{_where(tests)}{limit}"
    if plan == STREAM:  # each match's narrow index entry read by its id (cross join: the matches drive)
        tests = [c.sql(use_index=False) for c in others]
        return f"select b.id as id{sort_value} from ({driver.matching_ids}) d" \
            f" cross join books b indexed by {NARROW_INDEX} on b.id = d.id" \
            f"{_where(tests)}{limit}"
    ids = f"select id from ({driver.matching_ids}) where +id in (select b.id from books b{_where(tests)}){limit}"
    return f"select b.id as id{sort_value} from books b where b.id in ({ids})" if sort_column else ids


def count_sql(conditions: list[Condition], plan: str = MATCHES_SET, cap: int = COUNT_CAP) -> str:
    """A count of the matching books that stops at cap + 1: a title term alone counts the positions
    in its index, no book or id read."""
    if len(conditions) == 1 and conditions[0].positions:
        return f"select count(*) from ({conditions[0].positions} limit {cap + 1})"
    return f"select count(*) from ({matching_ids_sql(conditions, plan=plan, cap=cap)})"


def sides_sql(filters: BookFilters) -> tuple[str, str, str, dict] | None:
    """When a full-text filter meets others: (SQL counting its matches, SQL counting the books the
    others pass, STREAMABLE_BOOKS, params). Counts stop at COUNT_CAP + 1 (cheap either way), except
    from the figures computed at publication: categories and a lowest rating are counted exactly
    there, which with the catalogue's size tells a dense intersection (meeting_plan)."""
    conditions, params = where_clause(filters)
    driver = next((c for c in conditions if c.matching_ids), None)
    if driver is None or len(conditions) == 1:
        return None
    matches = count_sql([driver])
    others = replace(filters, q=None, title_like=None)
    if only_figures(others):
        return matches, total_query(others)[0], STREAMABLE_BOOKS, params
    others_sql = matching_ids_sql([c for c in conditions if c is not driver])
    return matches, f"select count(*) from ({others_sql})", STREAMABLE_BOOKS, params


# The catalogue's size, or NULL in a file published before NARROW_INDEX (which a stream reads).
STREAMABLE_BOOKS = (
    f"select case when exists (select 1 from sqlite_master where type = 'index' and name = '{NARROW_INDEX}')"
    " then (select coalesce(sum(books), 0) from category_figures) end"
)
# Both sides larger than COUNT_CAP: the matches are streamed when at least this share of the books
# pass the others (the count then stops after at most COUNT_CAP / share matches read).
STREAM_SHARE = 0.25


def meeting_plan(matches: int, others: int, books: int | None) -> str:
    """The plan for sides of these sizes (each counted up to COUNT_CAP + 1, or exact from the
    figures) in a catalogue of `books` (None: no NARROW_INDEX to stream through). Both small: a set
    of the smaller. Few matches and many others: the matches streamed, a bounded number of books
    read (a walk of the others' index could read most of the catalogue). Both large: the matches
    streamed if the others are known to pass a large share of the books, else a set of them."""
    if others <= COUNT_CAP and others <= matches:
        return OTHERS_SET
    if not books or (matches <= COUNT_CAP and others <= COUNT_CAP):
        return MATCHES_SET
    if matches <= COUNT_CAP:
        return STREAM
    return STREAM if others >= STREAM_SHARE * books else MATCHES_SET


def only_categories(filters: BookFilters) -> bool:
    return replace(filters, category=None, category_like=None) == BookFilters()


def only_figures(filters: BookFilters) -> bool:
    """Whether the figures computed at publication count the matches: categories and a lowest rating."""
    return only_categories(replace(filters, min_rating=None))


def is_many(filters: BookFilters, keyset: Keyset, total: int, exact: bool) -> bool:
    """Whether a page walks the sort's index (list_query) rather than sorting the matching ids. By
    category alone, the category index (which holds price and title) sorts up to CATEGORY_GATHER_MAX
    books, except by rating, which it lacks: a walk of the rating index meets every category."""
    if only_categories(filters) and keyset.name != "rating":
        return total > CATEGORY_GATHER_MAX
    return not exact or total > COUNT_CAP


def total_query(filters: BookFilters, plan: str = MATCHES_SET) -> tuple[str, dict, bool]:
    """(SQL of the total, params, whether it is exact): a sum of the figures when only categories and
    a lowest rating filter, else a count of the matching ids, which stops at COUNT_CAP + 1 (then not
    exact). A sum of the rating figures is exact too but capped the same way (said not exact), so a
    total past COUNT_CAP means one thing whichever way it was found."""
    conditions, params = where_clause(filters)
    if only_figures(filters):
        key = "category" if filters.category is not None else "category_like" if filters.category_like else None
        if filters.min_rating is None:
            return CATEGORY_TOTALS[key], params, True
        return RATED_TOTALS[key], params, False
    return count_sql(conditions, plan), params, False


def title_order_positions(filters: BookFilters, keyset: Keyset) -> str | None:
    """A title term alone, sorted by title: its index's matches in position order, which is the
    keyset's (title, id) order (title_search), or None when the page needs another plan."""
    if keyset.name != "title" or filters.title_like is None or replace(filters, title_like=None) != BookFilters():
        return None
    conditions, _ = where_clause(filters)
    return conditions[0].positions


# The position of the first book after a (title, id) cursor, ascending or descending: as keyset_sql
# compares, the same title and a later id, else the nearest later title, two seeks of the title index.
CURSOR_POSITIONS = {
    way: f"(select position from {FOLDED_TITLES} where id = (select id from ("
    f"select * from (select b.id as id, b.title as title from books b where b.title = :after_value"
    f" and b.id {later} :after_id order by b.id {way} limit 1) union all"
    f" select * from (select b.id as id, b.title as title from books b where b.title {later} :after_value"
    f" order by b.title {way}, b.id {way} limit 1)) order by title {way}, id {way} limit 1))"
    for way, later in (("asc", ">"), ("desc", "<"))
}


def title_order_query(filters: BookFilters, keyset: Keyset, page) -> tuple[str, dict] | None:
    """(page SQL, params) of a title search sorted by title, read in title order from the title
    index (title_order_positions): the first limit + 1 matches from the cursor's position (or the
    offset), then their books; None when that plan does not apply."""
    positions = title_order_positions(filters, keyset)
    if positions is None:
        return None
    _, params = where_clause(filters)
    way = "desc" if keyset.descending else "asc"
    params["page_rows"] = page.limit + 1
    if page.after is None:
        after, cut = "", " offset :page_offset"
        params["page_offset"] = page.offset
    else:
        after, cut = f" and rowid {'<=' if keyset.descending else '>='} {CURSOR_POSITIONS[way]}", ""
        params.update(after_value=page.after.value, after_id=page.after.id)
    matches = f"{positions}{after} order by rowid {way} limit :page_rows{cut}"
    ids_sql = f"select f.id as id, m.position as position from ({matches}) m" \
        f" cross join {FOLDED_TITLES} f on f.position = m.position"
    page_sql = f"{book_select(f'({ids_sql}) p cross join books b on b.id = p.id')} order by p.position {way}"
    return page_sql, params


def list_query(
    filters: BookFilters, keyset: Keyset, page, many: bool, plan: str = MATCHES_SET, cap: int | None = COUNT_CAP
) -> tuple[str, dict]:
    """(page SQL, params) for a filtered, sorted page of books (limit + 1 rows).

    Few matches: the page is cut from the matching ids and their sort values, sorted. Many (`many`):
    the sort's index is walked and each row tested, which stops after limit + 1 matches (when at
    least COUNT_CAP books of the catalogue match, a short walk). A full-text filter alone, by id: the
    first of its matches (its index holds them in id order). Either way only ids and sort values are
    sorted and walked; the page's rows are read last, limit + 1 of them. A title term alone sorted by
    title: the first limit + 1 of its matches in the title index's order (title_order_query). The
    matching ids sorted are at most cap + 1 (all with no cap: after a walk that gave up, WALK_STEPS)."""
    title_ordered = title_order_query(filters, keyset, page)
    if title_ordered is not None:
        return title_ordered
    conditions, params = where_clause(filters)
    column = keyset.name
    if len(conditions) == 1 and conditions[0].ids_in_order and column is None:
        source, tests = f"({conditions[0].matching_ids}) b", []
    elif conditions and not many and only_categories(filters):
        source, tests = "books b", [c.sql() for c in conditions]  # the category index: the only one
    elif conditions and not many:
        source, tests = f"({matching_ids_sql(conditions, column, plan, cap)}) b", []
    else:
        hint = f"indexed by {SORT_INDEXES[column]}" if column else "not indexed"  # not indexed: rowid order
        source, tests = f"books b {hint}", [c.sql(use_index=c.column == column) for c in conditions]
    sort_value = f", {keyset.column} as {column}" if column else ""
    ids_sql, page_params = keyset_sql(f"select b.id{sort_value} from {source}", tests, keyset, page)
    way = "desc" if keyset.descending else "asc"
    order = f"p.{column} {way}, p.id {way}" if column else f"p.id {way}"
    page_sql = f"{book_select(f'({ids_sql}) p cross join books b on b.id = p.id')} order by {order}"
    return page_sql, {**params, **page_params}


def rating_runs_apply(filters: BookFilters, keyset: Keyset, page) -> bool:
    """Whether rating_runs_query reads the page: an exact category and a lowest rating, nothing else,
    sorted by price, from the start or a cursor."""
    return (keyset.name == "price" and page.offset == 0 and filters.category is not None
            and filters.min_rating is not None and replace(filters, category=None, min_rating=None) == BookFilters())


def category_ids_sql(filters: BookFilters) -> tuple[str, dict]:
    return f"select id from categories where {CATEGORY_MATCHES['category']} order by id", {"category": filters.category}


def rating_runs_query(category_ids: list[int], filters: BookFilters, keyset: Keyset, page) -> tuple[str, dict]:
    """(page SQL, params): the first limit + 1 books after the cursor of each (category, rating) run
    of RATING_RUNS_INDEX, which holds each run in price order, merged. The ids are the categories'
    (category_ids_sql): integers the database gave."""
    arms, params = [], {}
    for category_id in category_ids:
        for rating in (rating for rating in RATINGS if rating >= filters.min_rating):
            tests = [f"b.category_id = {int(category_id)}", f"b.rating = {rating}"]
            arm, params = keyset_sql(f"select b.id, b.price as price from books b indexed by {RATING_RUNS_INDEX}",
                                     tests, keyset, page)
            arms.append(f"select * from ({arm})")
    way = "desc" if keyset.descending else "asc"
    ids_sql = " union all ".join(arms) + f" order by price {way}, id {way} limit :page_rows"
    page_sql = f"{book_select(f'({ids_sql}) p cross join books b on b.id = p.id')} order by p.price {way}, p.id {way}"
    return page_sql, params


def _where(tests: list[str]) -> str:
    return (" where " + " and ".join(tests)) if tests else ""


def casefold(text):
    """SQL casefold(): Unicode case folding, where SQLite's lower() and LIKE fold ASCII only."""
    return text.casefold() if isinstance(text, str) else text


def add_sql_functions(conn: sqlite3.Connection) -> None:
    """For the case-insensitive search: SQLite's LIKE folds ASCII letters only."""
    conn.create_function("casefold", 1, casefold, deterministic=True)


def open_search_indexes(conn: sqlite3.Connection) -> None:
    """Open a books connection's full-text tables before any query runs on it. FTS5 opens a table
    on its first use in a connection by running SQL of its own, and a query stopped by the time limit
    in the middle of that fails as "vtable constructor failed" (a 500), not as interrupted."""
    found = conn.execute(
        "select name from sqlite_master where type = 'table' and name in (?, ?)", (TITLE_INDEX, FTS_TABLE)
    ).fetchall()
    for (name,) in found:
        conn.execute(f"select 1 from [{name}] limit 0").fetchall()


def like_pattern(text: str) -> str:
    """A case-insensitive 'contains' pattern with LIKE's wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fts_query(text: str) -> str | None:
    """Words of free text as an FTS5 query matching all of them; None when there are no words."""
    words = re.findall(r"\w+", text)
    return " ".join(f'"{word}"' for word in words) or None


def book_json(book: dict) -> dict:
    """A row of the book SELECT (web.read_rows) as the API answers it: in_stock a boolean."""
    if book["in_stock"] is not None:
        book["in_stock"] = bool(book["in_stock"])
    return book


async def read_books(datasette, db, sql: str, params: dict, max_steps: int | None = None) -> list[dict]:
    """The books of a book SELECT as the API answers them, read the cheap way (web.read_rows)."""
    return [book_json(row) for row in await read_rows(datasette, db, sql, params, max_steps)]


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
    found = await read_books(datasette, db, f"{BOOK_SELECT} where b.id = :id", {"id": book_id})
    if not found:
        raise ApiError(404, f"no book has id {book_id}", "book_not_found", id=book_id)
    return json_response(found[0])


async def categories(request, datasette):
    page = page_of(query_values("/api/v1/categories", request.args))
    rows = await read_rows(datasette, books_database(datasette), CATEGORY_COUNTS_SELECT, {})
    window = rows[page.offset : page.offset + page.limit]
    return json_response(page_body(request, datasette, "categories", window, len(rows), page))


async def gathered_or_walked(db, filters: BookFilters, keyset: Keyset, page, plan: str) -> tuple[str, dict]:
    """After a walk that gave up (WALK_STEPS): the matching ids sorted when there are at most
    GATHER_MAX of them (counted to GATHER_MAX + 1), else the walk without its bound."""
    conditions, params = where_clause(filters)
    matches = (await db.execute(count_sql(conditions, plan, GATHER_MAX), params)).single_value()
    many = matches > GATHER_MAX
    return list_query(filters, keyset, page, many, plan, None)


async def read_page(datasette, db, filters: BookFilters, keyset: Keyset, page, total: int, exact: bool,
                    plan: str) -> list[dict]:
    """The page's books (limit + 1 of them) when some match: by the per-rating runs, or list_query's
    plan for the total, a walk that gives up after WALK_STEPS then taking gathered_or_walked's."""
    if rating_runs_apply(filters, keyset, page):
        category_ids = [row["id"] for row in await db.execute(*category_ids_sql(filters))]
        if not category_ids:
            return []
        return await read_books(datasette, db, *rating_runs_query(category_ids, filters, keyset, page))
    many = is_many(filters, keyset, total, exact)
    try:
        return await read_books(datasette, db, *list_query(filters, keyset, page, many, plan),
                                WALK_STEPS if many else None)
    except TooManySteps:  # the matches lie far along the sort's order
        return await read_books(datasette, db, *await gathered_or_walked(db, filters, keyset, page, plan))


async def _book_page(request, datasette, path: str, filters: BookFilters, args: dict):
    page = page_of(args, path)
    keyset = keyset_of(args["sort"])
    db = books_database(datasette)
    plan, sides = MATCHES_SET, sides_sql(filters)
    if sides is not None:
        *counts, params = sides
        plan = meeting_plan(*[sql and (await db.execute(sql, params)).single_value() for sql in counts])
    total_sql, total_params, exact = total_query(filters, plan)
    title_ordered = title_order_query(filters, keyset, page)
    if title_ordered is None:
        counted, fetched = await db.execute(total_sql, total_params), None
    else:  # a page whose plan needs no count: read beside the count, in another of Datasette's SQL threads
        counted, fetched = await asyncio.gather(
            db.execute(total_sql, total_params), read_books(datasette, db, *title_ordered)
        )
    total = counted.single_value()
    if not exact:  # the count stopped at COUNT_CAP + 1 rows: more than COUNT_CAP match
        exact, total = total <= COUNT_CAP, min(total, COUNT_CAP)
    if fetched is None:
        fetched = await read_page(datasette, db, filters, keyset, page, total, exact, plan) if total else []
    rows, after = next_cursor(path, keyset, fetched, page)
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
