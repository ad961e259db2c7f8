"""Datasette's search page on the books table stays quick however many books a search matches.

Datasette 0.65 answers `/books/books?_search=love` with four queries over every matching book: the
page sorted by title, a count and one per facet. Each looks every match up in the (wide) books table,
so at a million books, where "love" matches 296,000, the page took 1.3 s. The full-text index alone
counts those matches in ~20 ms.

So a search (no facet asked for by name) that the index says matches more than BROAD_SEARCH_BOOKS:
- is served with Datasette's own `_nocount` and `_nofacet` (`broad_search` below, an ASGI wrapper),
  marked with the value BROAD so the page's links carry the mark, and each request decides afresh;
  the HTML page shows the index's count instead (templates/table.html) and says why facets are left
  out. With column filters too, the same: counting the filtered matches costs as much (SQLite
  lists every match of the search first, ~250 ms at 1M), and the page says so without a count. A
  search matching fewer books is Datasette's page unchanged.
- sorted by title (the table's order), price or rating, best first, gets a clause that is always
  true (the column is not null): it lets SQLite walk the partial index the publication built for
  that order (aggregates.SEARCH_ORDERS) in order and stop after a page, instead of reading and sorting
  every match. A narrow search, or one with a column filter, does not get it: walking the column
  until a page of rare matches turns up would read the whole index. (Sorted by id, SQLite reads
  the matches in id order anyway.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from datasette.filters import FilterArguments

from books_scraper.aggregates import SEARCH_ORDERS, search_order_hint
from books_scraper.web.datasette_internals import QueryInterrupted
from books_scraper.web.served_metadata import BOOKS_DATABASE

TABLE = "books"
# Above this many matches, counting and faceting them all costs more than the page may (each
# ~2 µs a match at 1M books); at or below, Datasette's own page answers in ~100 ms.
BROAD_SEARCH_BOOKS = 10_000
BROAD = "broad-search"  # the value of _nocount and _nofacet when this module set them
SWITCHES = ("_nocount", "_nofacet")

App = Callable[[dict, Callable, Callable], Awaitable[None]]


def is_filter(key: str) -> bool:
    """A column filter, as Datasette's table view tells them from its own `_` arguments."""
    return not (key.startswith("_") and "__" not in key) or key in ("_where", "_through")


def asks_for_facet(key: str) -> bool:
    """?_facet=, ?_facet_array=, ?_facet_date=: a facet the client asked for by name."""
    return key.startswith("_facet") and key != "_facet_size"


def first_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Each argument's first value, the one Datasette's request.args gives."""
    args: dict[str, str] = {}
    for key, value in pairs:
        args.setdefault(key, value)
    return args


def is_filtered(pairs: list[tuple[str, str]]) -> bool:
    return any(is_filter(key) for key, _ in pairs)


def plain_search(pairs: list[tuple[str, str]]) -> str | None:
    """The search term of a request that searches the books' own full-text index and leaves counts
    and facets to us (column filters allowed: the index's count is then an upper bound), or None."""
    args = first_values(pairs)
    if not args.get("_search"):
        return None
    if any(key in args for key in ("_fts_table", "_fts_pk")) or any(
        key.startswith("_search_") for key in args
    ):
        return None
    if any(args.get(switch) for switch in SWITCHES) or any(asks_for_facet(key) for key in args):
        return None  # the client chose what to count: Datasette's page, as asked
    return args["_search"]


async def matches(datasette, search: str, raw: bool, limit: int | None = None) -> int | None:
    """Books the search matches, counted by the full-text index alone, up to `limit` (None if the
    index cannot say: no index, or a raw query's syntax error, which Datasette then reports)."""
    try:
        db = datasette.get_database(BOOKS_DATABASE)
    except KeyError:  # a Datasette serving other files
        return None
    fts_table = datasette.metadata("fts_table", database=BOOKS_DATABASE, table=TABLE) or await db.fts_table(TABLE)
    if not fts_table:
        return None
    match = f"select rowid from [{fts_table}] where [{fts_table}] match {':search' if raw else 'escape_fts(:search)'}"
    bounded = match if limit is None else f"{match} limit {int(limit)}"
    try:
        return (await db.execute(f"select count(*) from ({bounded})", {"search": search})).first()[0]
    except (sqlite3.DatabaseError, QueryInterrupted):
        return None


def table_paths(datasette) -> tuple[str, ...]:
    """The books table's HTML and JSON paths; none while no books database is attached."""
    if BOOKS_DATABASE not in datasette.databases:
        return ()
    path = datasette.urls.table(BOOKS_DATABASE, TABLE)
    return path, path + ".json"


def raw_mode(datasette, args: dict[str, str]) -> bool:
    mode = args.get("_searchmode") or datasette.metadata("searchmode", database=BOOKS_DATABASE, table=TABLE)
    return mode == "raw"


async def adjusted(datasette, scope: dict) -> dict:
    """The request's scope, with _nocount and _nofacet set to BROAD when its search is broad; any
    BROAD switch an earlier page's link carried is dropped first, so each request decides afresh."""
    received = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    pairs = [(key, value) for key, value in received if not (key in SWITCHES and value == BROAD)]
    search = plain_search(pairs)
    if search is not None:
        # Counting stops past the limit: deciding costs ~1 ms however many books match.
        count = await matches(datasette, search, raw_mode(datasette, first_values(pairs)), limit=BROAD_SEARCH_BOOKS + 1)
        if count is not None and count > BROAD_SEARCH_BOOKS:
            pairs += [(switch, BROAD) for switch in SWITCHES]
    if pairs == received:
        return scope
    return {**scope, "query_string": urlencode(pairs).encode("ascii")}


def broad_search(datasette, app: App) -> App:
    """ASGI middleware: the books table's HTML and JSON pages get `adjusted` scopes."""

    async def wrapped(scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD") and (
            scope.get("path") in table_paths(datasette)
        ):
            scope = await adjusted(datasette, scope)
        await app(scope, receive, send)

    return wrapped


def is_broad(request) -> bool:
    return request is not None and all(request.args.get(switch) == BROAD for switch in SWITCHES)


def sort_order(datasette, request) -> tuple[str | None, str]:
    """The column the page is sorted by and its direction (asked for, or the table's default)."""
    sort, sort_desc = request.args.get("_sort"), request.args.get("_sort_desc")
    if not sort and not sort_desc:
        sort = datasette.metadata("sort", database=BOOKS_DATABASE, table=TABLE)
        sort_desc = datasette.metadata("sort_desc", database=BOOKS_DATABASE, table=TABLE)
    return (sort, "asc") if sort else (sort_desc, "desc")


def request_pairs(request) -> list[tuple[str, str]]:
    return parse_qsl(request.query_string, keep_blank_values=True)


def search_order(request, database: str, table: str, datasette) -> FilterArguments | None:
    """filters_from_request: the order hint, for a broad search sorted by a column that has one.
    Not with a column filter: a walk in the column's order could then read most of the index before
    a page of books passes it (a small category)."""
    if database != BOOKS_DATABASE or table != TABLE or not is_broad(request) or is_filtered(request_pairs(request)):
        return None
    column, direction = sort_order(datasette, request)
    if SEARCH_ORDERS.get(column) != direction:
        return None
    return FilterArguments([search_order_hint(column)])


def broad_search_vars(template: str, database: str | None, table: str | None, request, datasette):
    """extra_template_vars for table.html: a broad search's count by the index (~20 ms for 296,000
    matches), which the page shows in place of Datasette's, and the limit facets stop at."""
    if template != "table.html" or database != BOOKS_DATABASE or table != TABLE or not is_broad(request):
        return {}

    async def inner() -> dict[str, Any]:
        if is_filtered(request_pairs(request)):  # the index counts the search's matches, not the filters'
            return {"broad_search": {"matches": None, "limit": BROAD_SEARCH_BOOKS}}
        count = await matches(datasette, request.args["_search"], raw_mode(datasette, request.args))
        return {} if count is None else {"broad_search": {"matches": count, "limit": BROAD_SEARCH_BOOKS}}

    return inner
