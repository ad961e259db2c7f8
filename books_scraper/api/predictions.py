"""Model feedback: POST/GET /api/v1/ml/predictions and /api/v1/ml/predictions/summary, their views
and their SQL; a posted batch is validated whole (all rows or none).

Batches are stored in the operations database (writable; its schema and migrations are
books_scraper/operations.py's), scored against the books database's ratings.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from books_scraper import operations
from books_scraper.api.cache import cache
from books_scraper.api.config import api_config
from books_scraper.api.errors import ApiError
from books_scraper.api.params import MODEL_PATTERN, page_of, pattern_matches, query_values
from books_scraper.api.web import (
    api_route, books_database, json_response, operations_database, page_body, read_json,
    require_permission,
)

DEFAULT_MODEL = "default"
MIN_RATING, MAX_RATING = 0.0, 5.0
PREDICTION_COLUMNS = "id, batch_id, model, book_id, predicted_rating, actor, created_at"


@dataclass(frozen=True)
class Batch:
    model: str
    rows: list[dict[str, Any]]


def parse_batch(payload: Any, known_ids: Container[int], max_rows: int) -> Batch:
    """A list of {id, predicted_rating}, bare or as {model, predictions}; any bad row rejects all."""
    model = DEFAULT_MODEL
    rows = payload
    if isinstance(payload, dict):
        model = payload.get("model", DEFAULT_MODEL)
        rows = payload.get("predictions")
        if not isinstance(model, str) or not pattern_matches(MODEL_PATTERN, model):
            raise ApiError(
                422, "model must be 1-100 letters, digits or _.:- starting with a letter or digit",
                "invalid_model",
            )
    if not isinstance(rows, list):
        raise ApiError(
            422, "the body must be a JSON list of predictions or {\"model\": ..., \"predictions\": [...]}",
            "invalid_batch",
        )
    if not rows:
        raise ApiError(422, "the batch has no predictions", "empty_batch")
    if len(rows) > max_rows:
        raise ApiError(
            413, f"the batch has {len(rows)} predictions; the limit is {max_rows}", "too_many_rows"
        )
    seen: set[int] = set()
    clean = []
    for index, row in enumerate(rows):
        clean.append(_parse_row(index, row, known_ids, seen))
    return Batch(model, clean)


def _parse_row(index: int, row: Any, known_ids: Container[int], seen: set[int]) -> dict:
    def reject(code: str, problem: str, **details: Any) -> ApiError:
        return ApiError(422, f"row {index}: {problem}", code, row=index, **details)

    if not isinstance(row, dict):
        raise reject("invalid_row", "must be an object with id and predicted_rating")
    book_id = row.get("id")
    if isinstance(book_id, bool) or not isinstance(book_id, int):
        raise reject("invalid_id", "id must be an integer book id", id=book_id)
    if book_id not in known_ids:
        raise reject("unknown_book", f"no book has id {book_id}", id=book_id)
    if book_id in seen:
        raise reject("duplicate_id", f"book {book_id} appears more than once in the batch", id=book_id)
    seen.add(book_id)
    rating = row.get("predicted_rating")
    if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not math.isfinite(rating):
        raise reject("invalid_rating", "predicted_rating must be a number", id=book_id)
    if not MIN_RATING <= rating <= MAX_RATING:
        raise reject(
            "invalid_rating", f"predicted_rating must be between {MIN_RATING:g} and {MAX_RATING:g}",
            id=book_id,
        )
    return {"id": book_id, "predicted_rating": float(rating)}


def summary(
    conn: sqlite3.Connection, ratings: dict[int, int], model: str | None = None
) -> list[dict]:
    """Per model: counts, MAE and RMSE against the published ratings (books since removed are not scored)."""
    conn.create_function("books_api_actual_rating", 1, ratings.get, deterministic=True)
    where = " where model = :model" if model is not None else ""
    rows = conn.execute(
        "select model, count(*), count(distinct batch_id), count(error), avg(abs(error)),"
        " avg(error * error), max(created_at)"
        " from (select model, batch_id, created_at,"
        "   predicted_rating - books_api_actual_rating(book_id) as error"
        f"   from predictions{where})"
        " group by model order by model",
        {"model": model},
    )
    return [
        {
            "model": name,
            "predictions": count,
            "batches": batches,
            "evaluated": evaluated,
            "mae": None if mae is None else round(mae, 4),
            "rmse": None if mse is None else round(math.sqrt(mse), 4),
            "last_prediction_at": last,
        }
        for name, count, batches, evaluated, mae, mse, last in rows
    ]


def ratings(conn: sqlite3.Connection) -> dict[int, int]:
    """book id -> rating: the truth predictions are validated and scored against."""
    return dict(conn.execute("select id, rating from books"))


async def post_predictions(request, datasette):
    actor = await require_permission(datasette, request, "books-api-predict")
    config = api_config(datasette)
    ops = await _predictions_store(datasette)
    payload = await read_json(request, config.max_body_bytes)
    known = await cache.get(books_database(datasette), "ratings", ratings)
    batch = parse_batch(payload, known, config.max_prediction_rows)
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
    # No table yet (an operations database the crawler has not migrated): nothing stored.
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
    known = await cache.get(books_database(datasette), "ratings", ratings)
    models = await ops.execute_fn(lambda conn: summary(conn, known, model))
    return json_response({"models": models})


async def _predictions_store(datasette):
    """The operations database, if a batch can be written there: 503 when it is read-only or has no
    predictions table (operations.py creates it; serve.py migrates before Datasette starts)."""
    ops = operations_database(datasette)
    if not ops.is_mutable:
        raise ApiError(503, f"the {ops.name!r} database is read-only here", "database_read_only")
    if not await ops.table_exists(operations.PREDICTIONS):
        raise ApiError(
            503, f"the {ops.name!r} database has no {operations.PREDICTIONS} table: migrate it first "
            "(python -m books_scraper.serve does)", "database_unavailable",
        )
    return ops


ROUTES = [
    (r"^/api/v1/ml/predictions$", api_route(get=list_predictions, post=post_predictions)),
    (r"^/api/v1/ml/predictions/summary$", api_route(get=prediction_summary)),
]
