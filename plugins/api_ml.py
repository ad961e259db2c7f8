"""Data for models: /api/v1/ml/features (cached per database) and /api/v1/ml/training-data (streamed)."""

from datasette import hookimpl
from datasette.utils.asgi import AsgiStream

from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.params import Page, query_values
from books_scraper.api.training import (
    TRAINING_COLUMNS, TRAINING_SELECT, csv_chunk, keep, ndjson_chunk,
)
from books_scraper.api.web import api_route, books_database, json_response, page_body

STREAM_CHUNK = 500  # rows per query while streaming: memory stays flat whatever the catalogue size
JSON_PAGE = 100  # training-data rows per JSON page unless limit is given
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


@hookimpl
def register_routes():
    return [
        (r"^/api/v1/ml/features$", api_route(get=features)),
        (r"^/api/v1/ml/training-data$", api_route(get=training_data)),
    ]


async def features(request, datasette):
    args = query_values("/api/v1/ml/features", request.args)
    rows = await cache.get(books_database(datasette), "features", stats.features)
    # One row per book: every row unless the client pages (the rows are in memory already).
    page = Page(args["limit"] or max(len(rows), 1), args["offset"])
    window = rows[page.offset : page.offset + page.limit]
    if args["format"] == "csv":
        return _stream(lambda: _chunks(window), stats.FEATURE_COLUMNS, "csv", "features.csv")
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
        for row in await cache.get(db, "features", stats.features)
        if keep(row["id"], split, seed, test_size)
    ]
    wanted = ids[page.offset : page.offset + page.limit]
    placeholders = ", ".join("?" for _ in wanted) or "null"
    result = await db.execute(f"{TRAINING_SELECT} where b.id in ({placeholders}) order by b.id", wanted)
    body = page_body(request, datasette, "books", [dict(r) for r in result.rows], len(ids), page)
    body["split"] = {"split": split or "all", "test_size": test_size, "seed": seed}
    return json_response(body)


async def _split_rows(db, split, seed, test_size):
    """Keyset pages by id, filtered to the split: never the whole table in memory."""
    after = -1
    while True:
        page = (
            await db.execute(
                f"{TRAINING_SELECT} where b.id > :after order by b.id limit {STREAM_CHUNK}",
                {"after": after},
            )
        ).rows
        if not page:
            return
        after = page[-1]["id"]
        yield [dict(row) for row in page if keep(row["id"], split, seed, test_size)]


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
