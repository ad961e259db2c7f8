"""Data for models: GET /api/v1/ml/features and /api/v1/ml/training-data, their views and their SQL;
the deterministic train/test split and the CSV/NDJSON/JSON encodings.

Nothing is built in memory per catalogue: a JSON page is one query, and a whole answer (features
without `limit`, CSV, NDJSON) is streamed in keyset chunks, each read and encoded in Datasette's SQL
thread so the event loop only hands text to the client. A stream stops when its client goes.

Training rows are the catalogue's book columns plus `category` (no `category_slug`), with `in_stock`
as stored (0/1).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import sqlite3
from collections.abc import Callable
from contextlib import aclosing
from dataclasses import dataclass

from datasette.utils.asgi import AsgiStream

from books_scraper.aggregates import BOOK_SPLIT, DEFAULT_SPLIT_SEED, split_fraction
from books_scraper.api.cache import cache
from books_scraper.api.params import ML_SORT, Cursor, Page, encode_cursor, page_of, query_values
from books_scraper.api.web import COUNT_CAP, api_route, books_database, cursor_page_body, json_response
from books_scraper.storage import BOOK_COLUMNS

FEATURE_COLUMNS = ["id", "price", "rating", "available", "stock_count", "category_code"]
TRAINING_COLUMNS = [*BOOK_COLUMNS, "category"]
# The category code is the site's own category id, stable across crawls.
FEATURE_EXPRESSIONS = [
    "b.id", "b.price", "b.rating", "coalesce(b.in_stock, 0)", "b.stock_count", "b.category_id",
]
TRAINING_EXPRESSIONS = [*(f"b.{name}" for name in BOOK_COLUMNS), "c.name"]
# Rows per query while streaming, about 1 MB of text each: memory stays flat whatever the catalogue.
TRAINING_CHUNK = 500  # ~1.8 KB a row
FEATURE_CHUNK = 5000  # ~90 bytes a row
FEATURE_PAGE_MAX = 2000  # features JSON up to this limit is one query and one answer; above, streamed
JSON_PAGE = 100  # training-data rows per JSON page unless limit is given
logger = logging.getLogger(__name__)
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "json": "application/json; charset=utf-8",
}
SPLIT_FUNCTION = "books_api_split_fraction"  # split_fraction for any seed, computed in SQLite
FIRST = -(2**63)  # below every id: the start when no cursor is given


def in_test_split(book_id: int, seed: int, test_size: float) -> bool:
    """A book's side depends only on (seed, id): stable across crawls and as the catalogue grows."""
    return split_fraction(seed, book_id) < test_size


@dataclass(frozen=True)
class Selection:
    """The books a request reads, in id order: which columns, and which side of which split."""

    columns: list[str]
    expressions: list[str]
    join: str = ""  # the tables beyond `books b` the expressions need
    chunk: int = TRAINING_CHUNK  # rows per query when streamed
    split: str | None = None  # None: every book
    seed: int = DEFAULT_SPLIT_SEED
    test_size: float = 0.2
    split_table: bool = False  # the database has book_split (fractions for the default seed)

    @property
    def params(self) -> dict:
        return {"seed": self.seed, "test_size": self.test_size}

    def _ids(self) -> tuple[str, str, str | None]:
        """(table, id column, split condition): the narrow book_split table when there, so skipping
        and filtering rows never reads the wide books rows; the stored fraction for the default seed,
        else the same fraction computed in SQLite."""
        table, key = (BOOK_SPLIT, "book_id") if self.split_table else ("books", "id")
        if self.split is None:
            return table, key, None
        stored = self.split_table and self.seed == DEFAULT_SPLIT_SEED
        fraction = "fraction" if stored else f"{SPLIT_FUNCTION}(:seed, {key})"
        return table, key, f"{fraction} {'<' if self.split == 'test' else '>='} :test_size"

    def ids_sql(self) -> str:
        """Ids after :after in order, :limit of them from :offset. `not indexed` keeps the scan in id
        order (the fraction index would sort every chunk)."""
        table, key, condition = self._ids()
        where = f"{key} > :after" + (f" and {condition}" if condition else "")
        return (
            f"select {key} as id from {table} not indexed where {where}"
            f" order by {key} limit :limit offset :offset"
        )

    def rows_sql(self, values: list[str] | None = None) -> str:
        """The rows from the page of ids: the expressions, or `values` (SQL) of each row."""
        return (
            f"select {', '.join(values or self.expressions)} from ({self.ids_sql()}) as page"
            f" cross join books b on b.id = page.id{self.join} order by b.id"
        )

    def encoded_sql(self, output: str) -> str:
        """(id, the row's text in `output`) for each row."""
        return self.rows_sql(["b.id", row_text(output, self.columns, self.expressions)])

    @property
    def computed(self) -> bool:
        """Whether each book's side is computed (a seed other than book_split's) rather than read."""
        return self.split is not None and not (self.split_table and self.seed == DEFAULT_SPLIT_SEED)

    def count_sql(self) -> str:
        """The count; a computed split is counted up to COUNT_CAP + 1 rows only (hashing every book
        of a large catalogue takes seconds)."""
        table, key, condition = self._ids()
        if self.computed:
            return f"select count(*) from (select 1 from {table} where {condition} limit {COUNT_CAP + 1})"
        return f"select count(*) from {table}" + (f" where {condition}" if condition else "")


def prepare(conn: sqlite3.Connection) -> None:
    conn.create_function(SPLIT_FUNCTION, 2, split_fraction, deterministic=True)


def fetch(conn: sqlite3.Connection, sql: str, params: dict) -> list[tuple]:
    """Plain tuples (this cursor's own row factory): the project's own reads, outside the result
    budget Datasette's connections apply to clients' queries (web/query_limits.py)."""
    prepare(conn)
    cursor = conn.cursor()
    cursor.row_factory = None
    return cursor.execute(sql, params).fetchall()


def start(page: Page) -> int:
    """The id a page starts after: its cursor's, else before the first."""
    return FIRST if page.after is None else page.after.id


async def read_page(db, path: str, selection: Selection, page: Page) -> tuple[list[dict], str | None]:
    """A JSON page and the cursor of the next one (None at the end): limit + 1 rows are read, so a
    next page exists exactly when the extra row came."""
    params = {**selection.params, "after": start(page), "limit": page.limit + 1, "offset": page.offset}
    rows = await db.execute_fn(lambda conn: fetch(conn, selection.rows_sql(), params))
    rows = [dict(zip(selection.columns, row)) for row in rows]
    if len(rows) <= page.limit:
        return rows, None
    return rows[: page.limit], encode_cursor(path, Cursor(ML_SORT, None, rows[page.limit - 1]["id"]))


async def next_after(db, path: str, selection: Selection, last: int) -> str | None:
    """The next page's cursor after the row with id `last`, or None when no row follows."""
    params = {**selection.params, "after": last, "limit": 1, "offset": 0}
    more = await db.execute_fn(lambda conn: fetch(conn, selection.ids_sql(), params))
    return encode_cursor(path, Cursor(ML_SORT, None, last)) if more else None


async def count(db, selection: Selection) -> tuple[int, bool]:
    """(total, whether it is exact), once per database version: past COUNT_CAP a computed split
    answers COUNT_CAP, not exact, as the catalogue's filtered lists do."""
    name = f"count:{selection.split}:{selection.seed}:{selection.test_size}:{selection.split_table}"
    total = await cache.get(db, name, lambda conn: fetch(conn, selection.count_sql(), selection.params)[0][0])
    if selection.computed and total > COUNT_CAP:
        return COUNT_CAP, False
    return total, True


async def has_split_table(db) -> bool:
    return await cache.get(
        db, BOOK_SPLIT,
        lambda conn: bool(fetch(
            conn, "select 1 from sqlite_master where type = 'table' and name = :name", {"name": BOOK_SPLIT}
        )),
    )


# --- Encodings: each row's text is made by SQLite (in C, without Python's GIL, so the event loop
# keeps answering); Python only joins the lines. Python's csv module and json.dumps give the same
# documents (a test compares them on a crawled database): CSV quoting is csv.QUOTE_MINIMAL's, and
# numbers read back as stored (a real is written with 15 significant digits; prices have 2 decimals).


def csv_field(expression: str) -> str:
    """A value as csv.writer writes it: NULL empty; text quoted when it holds a quote, a comma or a
    line break, its quotes doubled; a number as SQLite prints it."""
    special = " or ".join(f"instr({expression}, {char})" for char in ("'\"'", "','", "char(10)", "char(13)"))
    quoted = f"'\"' || replace({expression}, '\"', '\"\"') || '\"'"
    return (
        f"case typeof({expression}) when 'null' then ''"
        f" when 'text' then iif({special}, {quoted}, {expression}) else cast({expression} as text) end"
    )


def row_text(output: str, columns: list[str], expressions: list[str]) -> str:
    """SQL of one row's text: a CSV line or a JSON object (without the line's end)."""
    if output == "csv":
        return " || ',' || ".join(csv_field(expression) for expression in expressions)
    return "json_object(" + ", ".join(f"'{name}', {e}" for name, e in zip(columns, expressions)) + ")"


def csv_header(columns: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(columns)
    return buffer.getvalue()


def joined(output: str, texts: list[str], columns: list[str], first: bool) -> str:
    """A chunk of rows' texts as the output's text: lines, or items of a JSON list (each chunk after
    the first led by the separator); the first CSV chunk starts with the header, even when empty."""
    if output == "json":
        items = ", ".join(texts)
        return items if first or not items else ", " + items
    lines = "".join(text + "\n" for text in texts)
    return csv_header(columns) + lines if output == "csv" and first else lines


# --- Streaming -------------------------------------------------------------------------------------


class Disconnect:
    """Watches the request's ASGI `receive` for http.disconnect: the client has gone (the server
    drops what is still sent, so the stream itself must stop)."""

    def __init__(self, request) -> None:
        self.task = asyncio.ensure_future(self._watch(request.receive))

    @staticmethod
    async def _watch(receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    @property
    def happened(self) -> bool:
        return self.task.done()

    def stop(self) -> None:
        self.task.cancel()


async def stream_chunks(db, selection: Selection, output: str, page: Page, limit: int | None, disconnect):
    """(UTF-8 bytes, rows, last id) of the selection from the page's start, keyset-paged by id
    (`offset` skips rows once, in the first query; the first chunk is encoded even when empty: a CSV
    header).
    The next chunk is read while this one is sent; nothing more is read once the client has gone."""

    def read(after: int, first: bool, size: int, skip: int):
        params = {**selection.params, "after": after, "limit": size, "offset": skip}

        def run(conn):
            rows = fetch(conn, selection.encoded_sql(output), params)
            text = joined(output, [text for _id, text in rows], selection.columns, first)
            return text.encode(), (rows[-1][0] if rows else after), len(rows)

        return asyncio.ensure_future(db.execute_fn(run))

    left = limit
    size = selection.chunk if left is None else min(selection.chunk, left)
    pending = read(start(page), True, size, page.offset)
    try:
        while pending is not None:
            data, after, got = await pending
            pending = None
            if left is not None:
                left -= got
            if got == size and left != 0 and not disconnect.happened:
                size = selection.chunk if left is None else min(selection.chunk, left)
                pending = read(after, False, size, 0)
            if disconnect.happened:
                return
            yield data, got, after
    finally:
        if pending is not None:
            pending.cancel()


async def send_bytes(writer, data: bytes) -> None:
    """A body chunk already encoded in the SQL thread: AsgiWriter.write would encode megabytes of
    text on the event loop; its `send` is the ASGI send it wraps."""
    await writer.send({"type": "http.response.body", "body": data, "more_body": True})


def stream_response(
    request, db, selection: Selection, output: str, page: Page, limit: int | None,
    filename: str | None = None, prefix: str = "", finish: Callable | None = None,
) -> AsgiStream:
    """The selection streamed as `output` from the page's start (`limit` rows, None: all), between
    `prefix` and `await finish(rows, last id)`; a HEAD request gets the headers only, and a client
    that goes stops the reading."""

    async def stream_fn(writer):
        if request.method == "HEAD":
            return
        disconnect = Disconnect(request)
        rows, last = 0, start(page)
        try:
            if prefix:
                await writer.write(prefix)
            chunks = stream_chunks(db, selection, output, page, limit, disconnect)
            async with aclosing(chunks):
                async for data, got, last in chunks:
                    rows += got
                    if data:
                        await send_bytes(writer, data)
            if disconnect.happened:
                logger.info("%s: the client went away after %d rows; the stream stopped", request.path, rows)
            elif finish is not None:
                await writer.write(await finish(rows, last))
        finally:
            disconnect.stop()

    headers = {"content-disposition": f'attachment; filename="{filename}"'} if filename else {}
    return AsgiStream(stream_fn, headers=headers, content_type=CONTENT_TYPES[output])


def envelope_stream(request, datasette, db, selection: Selection, key: str, page: Page, limit: int | None):
    """The list envelope as cursor_page_body makes it, `{key: [...], "total", ..., "next"}`, with its
    list streamed; `next` only when the client paged (`limit`) and rows follow."""

    async def finish(rows: int, last: int) -> str:
        after = None if limit is None or rows < limit else await next_after(db, request.path, selection, last)
        # cursor_page_body reads only how many rows there are from its rows argument.
        total, exact = await count(db, selection)
        tail = cursor_page_body(request, datasette, key, range(rows), total, page, after, exact)
        del tail[key]
        return "], " + json.dumps(tail)[1:]

    prefix = json.dumps(key).join(["{", ": ["])
    return stream_response(request, db, selection, "json", page, limit, prefix=prefix, finish=finish)


# --- Views -----------------------------------------------------------------------------------------


async def features_view(request, datasette):
    path = "/api/v1/ml/features"
    args = query_values(path, request.args)
    db = books_database(datasette)
    selection = Selection(
        FEATURE_COLUMNS, FEATURE_EXPRESSIONS, chunk=FEATURE_CHUNK, split_table=await has_split_table(db)
    )
    limit = args["limit"]
    if args["format"] == "csv":
        return stream_response(request, db, selection, "csv", page_of(args, path), limit, "features.csv")
    if limit is not None and limit <= FEATURE_PAGE_MAX:  # a page: one query, one answer
        page = page_of(args, path)
        (rows, after), (total, exact) = await read_page(db, path, selection, page), await count(db, selection)
        body = cursor_page_body(request, datasette, "features", rows, total, page, after, exact)
        return json_response(body)
    # Every row unless the client pages: the page's limit is then the whole catalogue.
    page = page_of({**args, "limit": limit or max((await count(db, selection))[0], 1)}, path)
    return envelope_stream(request, datasette, db, selection, "features", page, limit)


async def training_data(request, datasette):
    path = "/api/v1/ml/training-data"
    args = query_values(path, request.args)
    output = args["format"]
    split = None if args["split"] == "all" else args["split"]
    db = books_database(datasette)
    selection = Selection(
        TRAINING_COLUMNS, TRAINING_EXPRESSIONS, " join categories c on c.id = b.category_id",
        split=split, seed=args["seed"], test_size=args["test_size"], split_table=await has_split_table(db),
    )
    if output != "json":
        # Streams: every row of the split unless limit is given; offset skips rows of the split.
        filename = f"training-data-{split or 'all'}.{output}"
        return stream_response(request, db, selection, output, page_of(args, path), args["limit"], filename)
    page = page_of({**args, "limit": args["limit"] or JSON_PAGE}, path)
    (rows, after), (total, exact) = await read_page(db, path, selection, page), await count(db, selection)
    body = cursor_page_body(request, datasette, "books", rows, total, page, after, exact)
    body["split"] = {"split": split or "all", "test_size": selection.test_size, "seed": selection.seed}
    return json_response(body)


ROUTES = [
    (r"^/api/v1/ml/features$", api_route(get=features_view)),
    (r"^/api/v1/ml/training-data$", api_route(get=training_data)),
]
