"""Data for models: GET /api/v1/ml/features (cached per database) and /api/v1/ml/training-data
(streamed), their views and their SQL; the deterministic train/test split and CSV/NDJSON encoding.

Training rows are the catalogue's book rows (books.BOOK_SELECT, one definition of the join) without
`category_slug`, and with `in_stock` as stored (0/1)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections.abc import Iterable

from datasette.utils.asgi import AsgiStream

from books_scraper.api.books import BOOK_SELECT
from books_scraper.api.cache import cache
from books_scraper.api.params import Page, query_values
from books_scraper.api.web import api_route, books_database, json_response, page_body
from books_scraper.storage import BOOK_COLUMNS

FEATURE_COLUMNS = ["id", "price", "rating", "available", "stock_count", "category_code"]
TRAINING_COLUMNS = [*BOOK_COLUMNS, "category"]
STREAM_CHUNK = 500  # rows per query while streaming: memory stays flat whatever the catalogue size
JSON_PAGE = 100  # training-data rows per JSON page unless limit is given
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


def features(conn: sqlite3.Connection) -> list[dict]:
    """One numeric row per book; the category code is the site's own category id, stable across crawls."""
    rows = conn.execute(
        "select id, price, rating, coalesce(in_stock, 0), stock_count, category_id"
        " from books order by id"
    )
    return [dict(zip(FEATURE_COLUMNS, row)) for row in rows]


def training_row(row) -> dict:
    return {name: row[name] for name in TRAINING_COLUMNS}


def in_test_split(book_id: int, seed: int, test_size: float) -> bool:
    """A book's side depends only on (seed, id): stable across crawls and as the catalogue grows."""
    digest = hashlib.sha256(f"{seed}:{book_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_size


def keep(book_id: int, split: str | None, seed: int, test_size: float) -> bool:
    if split is None:
        return True
    return in_test_split(book_id, seed, test_size) == (split == "test")


def csv_chunk(rows: Iterable[dict], columns: list[str], header: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def ndjson_chunk(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


async def features_view(request, datasette):
    args = query_values("/api/v1/ml/features", request.args)
    rows = await cache.get(books_database(datasette), "features", features)
    # One row per book: every row unless the client pages (the rows are in memory already).
    page = Page(args["limit"] or max(len(rows), 1), args["offset"])
    window = rows[page.offset : page.offset + page.limit]
    if args["format"] == "csv":
        return _stream(lambda: _chunks(window), FEATURE_COLUMNS, "csv", "features.csv")
    return json_response(page_body(request, datasette, "features", window, len(rows), page))


async def training_data(request, datasette):
    args = query_values("/api/v1/ml/training-data", request.args)
    output = args["format"]
    split = None if args["split"] == "all" else args["split"]
    seed, test_size = args["seed"], args["test_size"]
    db = books_database(datasette)

    if output != "json":
        # Streams: every row of the split unless limit is given; offset skips rows of the split.
        def rows():
            return _window(_split_rows(db, split, seed, test_size), args["offset"], args["limit"])

        return _stream(rows, TRAINING_COLUMNS, output, f"training-data-{split or 'all'}.{output}")
    page = Page(args["limit"] or JSON_PAGE, args["offset"])
    ids = [
        row["id"]
        for row in await cache.get(db, "features", features)
        if keep(row["id"], split, seed, test_size)
    ]
    wanted = ids[page.offset : page.offset + page.limit]
    placeholders = ", ".join("?" for _ in wanted) or "null"
    result = await db.execute(f"{BOOK_SELECT} where b.id in ({placeholders}) order by b.id", wanted)
    rows = [training_row(row) for row in result.rows]
    body = page_body(request, datasette, "books", rows, len(ids), page)
    body["split"] = {"split": split or "all", "test_size": test_size, "seed": seed}
    return json_response(body)


async def _split_rows(db, split, seed, test_size):
    """Keyset pages by id, filtered to the split: never the whole table in memory."""
    after = -1
    while True:
        page = (
            await db.execute(
                f"{BOOK_SELECT} where b.id > :after order by b.id limit {STREAM_CHUNK}",
                {"after": after},
            )
        ).rows
        if not page:
            return
        after = page[-1]["id"]
        yield [training_row(row) for row in page if keep(row["id"], split, seed, test_size)]


async def _window(chunks, offset, limit):
    """The chunks' rows from `offset`, at most `limit` of them (None: all), still in chunks."""
    skip, left = offset, limit
    async for chunk in chunks:
        if skip:
            dropped, chunk = chunk[:skip], chunk[skip:]
            skip -= len(dropped)
        if left is not None:
            chunk = chunk[:left]
            left -= len(chunk)
        if chunk:
            yield chunk
        if left == 0:
            return


async def _chunks(rows):
    for start in range(0, len(rows), STREAM_CHUNK):
        yield rows[start : start + STREAM_CHUNK]


def _stream(chunks, columns, output, filename):
    async def stream_fn(writer):
        first = True
        async for chunk in chunks():
            if output == "csv":
                await writer.write(csv_chunk(chunk, columns, header=first))
            else:
                await writer.write(ndjson_chunk(chunk))
            first = False
        if first and output == "csv":
            await writer.write(csv_chunk([], columns, header=True))

    return AsgiStream(
        stream_fn,
        headers={"content-disposition": f'attachment; filename="{filename}"'},
        content_type=CONTENT_TYPES[output],
    )


ROUTES = [
    (r"^/api/v1/ml/features$", api_route(get=features_view)),
    (r"^/api/v1/ml/training-data$", api_route(get=training_data)),
]
