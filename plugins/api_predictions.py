"""Model feedback: POST/GET /api/v1/ml/predictions and /api/v1/ml/predictions/summary.

Batches are stored in the operations database (writable), scored against the books database's ratings.
"""

import uuid

from datasette import hookimpl
from sqlite_utils import Database

from books_scraper import operations
from books_scraper.api import stats
from books_scraper.api.cache import cache
from books_scraper.api.errors import ApiError
from books_scraper.api.params import page_of, query_values
from books_scraper.api.predictions import parse_batch, summary
from books_scraper.api.web import (
    api_config, api_route, books_database, json_response, operations_database, page_body,
    read_json, require_permission,
)

PREDICTION_COLUMNS = "id, batch_id, model, book_id, predicted_rating, actor, created_at"


@hookimpl
def register_routes():
    return [
        (r"^/api/v1/ml/predictions$", api_route(get=list_predictions, post=post_predictions)),
        (r"^/api/v1/ml/predictions/summary$", api_route(get=prediction_summary)),
    ]


@hookimpl
def startup(datasette):
    async def inner():
        # The predictions table exists from the first request, even before the next crawl migrates.
        name = api_config(datasette).operations_database
        db = datasette.databases.get(name)
        if db is not None and db.is_mutable:
            await db.execute_write_fn(lambda conn: operations.migrations.apply(Database(conn)))

    return inner


async def post_predictions(request, datasette):
    actor = await require_permission(datasette, request, "books-api-predict")
    config = api_config(datasette)
    ops = _writable_operations(datasette)
    payload = await read_json(request, config.max_body_bytes)
    ratings = await cache.get(books_database(datasette), "ratings", stats.ratings)
    batch = parse_batch(payload, ratings, config.max_prediction_rows)
    batch_id = uuid.uuid4().hex

    def write(conn):
        return operations.save_predictions(
            Database(conn), batch.rows, model=batch.model, batch_id=batch_id, actor=actor.get("id")
        )

    count = await ops.execute_write_fn(write)
    return json_response(
        {"ok": True, "batch_id": batch_id, "model": batch.model, "count": count}, status=201
    )


async def list_predictions(request, datasette):
    ops = operations_database(datasette)
    args = query_values("/api/v1/ml/predictions", request.args)
    filters = {"model": args["model"], "batch_id": args["batch"], "book_id": args["book_id"]}
    page = page_of(args)
    conditions = [f"{column} = :{column}" for column, value in filters.items() if value is not None]
    where = (" where " + " and ".join(conditions)) if conditions else ""
    params = {**filters, "limit": page.limit, "offset": page.offset}
    if not await ops.table_exists(operations.PREDICTIONS):
        return json_response(page_body(request, datasette, "predictions", [], 0, page))
    total = (await ops.execute(f"select count(*) from predictions{where}", params)).single_value()
    rows = await ops.execute(
        f"select {PREDICTION_COLUMNS} from predictions{where} order by id limit :limit offset :offset",
        params,
    )
    return json_response(page_body(request, datasette, "predictions", [dict(r) for r in rows.rows], total, page))


async def prediction_summary(request, datasette):
    ops = operations_database(datasette)
    model = query_values("/api/v1/ml/predictions/summary", request.args)["model"]
    if not await ops.table_exists(operations.PREDICTIONS):
        return json_response({"models": []})
    ratings = await cache.get(books_database(datasette), "ratings", stats.ratings)
    models = await ops.execute_fn(lambda conn: summary(conn, ratings, model))
    return json_response({"models": models})


def _writable_operations(datasette):
    ops = operations_database(datasette)
    if not ops.is_mutable:
        raise ApiError(503, f"the {ops.name!r} database is read-only here", "database_read_only")
    return ops
