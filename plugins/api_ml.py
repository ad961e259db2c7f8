"""Data for models: /api/v1/ml/features (cached per database) and /api/v1/ml/training-data (streamed)."""

from datasette import hookimpl
from datasette.utils.asgi import AsgiStream

from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.params import INT_MAX, choice_param, float_param, int_param, page_param
from books_scraper.api.training import (
    TRAINING_COLUMNS, TRAINING_SELECT, csv_chunk, keep, ndjson_chunk,
)
from books_scraper.api.web import api_route, books_database, json_response, page_body

STREAM_CHUNK = 500  # rows per query while streaming: memory stays flat whatever the catalogue size
FORMATS = ["json", "csv", "ndjson"]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


@hookimpl
def register_routes():
    return [
        (r"^/api/v1/ml/features$", api_route(get=features)),
        (r"^/api/v1/ml/training-data$", api_route(get=training_data)),
    ]


async def features(request, datasette):
    output = choice_param(request.args, "format", ["json", "csv"], "json")
    rows = await cache.get(books_database(datasette), "features", stats.features)
    if output == "csv":
        return _stream(lambda: _chunks(rows), stats.FEATURE_COLUMNS, "csv", "features.csv")
    # One row per book: every row unless the client pages (the rows are in memory already).
    page = page_param(request.args, default=max(len(rows), 1), maximum=INT_MAX)
    window = rows[page.offset : page.offset + page.limit]
    return json_response(page_body(request, datasette, "features", window, len(rows), page))


async def training_data(request, datasette):
    args = request.args
    output = choice_param(args, "format", FORMATS, "json")
    split = choice_param(args, "split", ["all", "train", "test"], "all")
    split = None if split == "all" else split
    test_size = float_param(args, "test_size", minimum=0, maximum=1)
    seed = int_param(args, "seed", 42)
    test_size = 0.2 if test_size is None else test_size
    db = books_database(datasette)

    async def rows():
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

    if output != "json":
        return _stream(rows, TRAINING_COLUMNS, output, f"training-data-{split or 'all'}.{output}")
    page = page_param(args, default=100, maximum=1000)
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
