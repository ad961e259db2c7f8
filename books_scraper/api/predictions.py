"""Model feedback: POST/GET /api/v1/ml/predictions and /api/v1/ml/predictions/summary, their views
and their SQL; a posted batch is validated whole (all rows or none).

Batches are stored in the operations database (writable; its schema and migrations are
books_scraper/operations.py's), scored against the books database's ratings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sqlite3
import uuid
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from sqlite_utils import Database

from books_scraper import aggregates, operations
from books_scraper.api.cache import database_version
from books_scraper.api.config import api_config
from books_scraper.api.errors import ApiError
from books_scraper.api.params import ML_SORT, MODEL_PATTERN, page_of, pattern_matches, query_values
from books_scraper.api.web import (
    COUNT_CAP, Keyset, api_route, books_database, cursor_page_body, json_response, keyset_sql, next_cursor,
    operations_database, read_json, require_permission,
)
from books_scraper.web.query_limits import unbudgeted
from books_scraper.web.served_metadata import BOOKS_DATABASE, OPERATIONS_DATABASE

logger = logging.getLogger(__name__)
DEFAULT_MODEL = "default"
MIN_RATING, MAX_RATING = 0.0, 5.0
PREDICTION_COLUMNS = "id, batch_id, model, book_id, predicted_rating, actor, created_at"
BY_ID = Keyset(ML_SORT, None, None, id_column="id")  # the predictions list's order: the id alone


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


# Per model, the sums the summary is made of, for the predictions with ids in (:after, :upto], each
# scored against the published rating (the operations connections see the books file as `books`,
# web/attached_books.py; a book since removed is counted, not evaluated).
TOTALS_SQL = f"""
select p.model, count(*), count(distinct p.batch_id), count(b.rating),
  total(abs(p.predicted_rating - b.rating)),
  total((p.predicted_rating - b.rating) * (p.predicted_rating - b.rating)), max(p.created_at)
from {operations.PREDICTIONS} p left join {BOOKS_DATABASE}.books b on b.id = p.book_id
where p.id > :after and p.id <= :upto group by p.model
"""
NO_ROWS = -(2**63)  # below every rowid


@dataclass(frozen=True)
class Totals:
    """One model's predictions as sums, so that later rows add to them."""

    predictions: int = 0
    batches: int = 0
    evaluated: int = 0
    abs_error: float = 0.0
    squared_error: float = 0.0
    last_prediction_at: str | None = None

    def __add__(self, other: "Totals") -> "Totals":
        lasts = [at for at in (self.last_prediction_at, other.last_prediction_at) if at is not None]
        return Totals(
            self.predictions + other.predictions, self.batches + other.batches,
            self.evaluated + other.evaluated, self.abs_error + other.abs_error,
            self.squared_error + other.squared_error, max(lasts, default=None),
        )

    def figures(self, model: str) -> dict:
        mae = self.abs_error / self.evaluated if self.evaluated else None
        mse = self.squared_error / self.evaluated if self.evaluated else None
        return {
            "model": model,
            "predictions": self.predictions,
            "batches": self.batches,
            "evaluated": self.evaluated,
            "mae": None if mae is None else round(mae, 4),
            "rmse": None if mse is None else round(math.sqrt(mse), 4),
            "last_prediction_at": self.last_prediction_at,
        }


@dataclass(frozen=True)
class Summary:
    """Every model's totals over the predictions up to id `upto`."""

    upto: int = NO_ROWS
    models: dict[str, Totals] = field(default_factory=dict)

    def extended(self, conn: sqlite3.Connection) -> "Summary":
        """Add the predictions stored since: only their rows are read (a batch is written in one
        transaction, so a batch is never split between two readings)."""
        upto = conn.execute(f"select max(id) from {operations.PREDICTIONS}").fetchone()[0]
        if upto is None or upto < self.upto:  # emptied or rows deleted by hand: start again
            if upto is None:
                return self if self.upto == NO_ROWS else Summary()
            return Summary().extended(conn)
        if upto == self.upto:
            return self
        models = dict(self.models)
        for model, *sums in conn.execute(TOTALS_SQL, {"after": self.upto, "upto": upto}):
            models[model] = models.get(model, Totals()) + Totals(*sums)
        return Summary(upto, models)

    @classmethod
    def stored(cls, rows: list[dict]) -> "Summary":
        """The summary saved as model_scores (scores()), or an empty one when there is none to trust."""
        if not rows or len({row["upto"] for row in rows}) != 1 or any(row["abs_error"] is None for row in rows):
            return cls()
        return cls(rows[0]["upto"], {
            row["model"]: Totals(row["predictions"], row["batches"], row["evaluated"], row["abs_error"],
                                 row["squared_error"], row["last_prediction_at"])
            for row in rows
        })

    def scores(self) -> list[dict]:
        """The figures with MAE and RMSE unrounded and the sums behind them, as model_scores keeps them."""
        return [
            {**totals.figures(name), "mae": mae, "rmse": None if mae is None else math.sqrt(mse),
             "abs_error": totals.abs_error, "squared_error": totals.squared_error}
            for name, totals in sorted(self.models.items())
            for mae, mse in [(totals.abs_error / totals.evaluated, totals.squared_error / totals.evaluated)
                             if totals.evaluated else (None, None)]
        ]

    def figures(self, model: str | None = None) -> list[dict]:
        return [
            totals.figures(name) for name, totals in sorted(self.models.items())
            if model is None or name == model
        ]


class SummaryCache:
    """The summary per published books version, brought up to date with the rows added since: the
    API only ever appends predictions, so their largest id says what has been read."""

    def __init__(self) -> None:
        self.summaries: dict[tuple, Summary] = {}
        self.locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()

    async def get(self, ops, books) -> Summary:
        """The summary of the operations database `ops` scored against the books database `books`."""
        key = (*database_version(books), ops.path, _inode(ops.path))
        # One reading at a time: a request during the first, whole reading waits for it and then
        # reads only what came since, instead of reading everything a second time.
        async with self.locks.setdefault(asyncio.get_running_loop(), asyncio.Lock()):
            books_hash = await books.execute_fn(aggregates.publication_hash)
            known = start = self.summaries.get(key)
            if known is None:  # a new process: carry on from the scores a server stored, if any
                start = Summary.stored(await ops.execute_fn(
                    lambda conn: operations.model_scores(Database(conn), books_hash)
                ))
            summary = await ops.execute_fn(unbudgeted(start.extended))
            self.summaries = {key: summary}  # one pair of databases served per process
            if summary is not known and summary is not start:  # the operations dashboard charts these
                await ops.execute_write_fn(lambda conn: operations.save_model_scores(
                    Database(conn), books_hash, summary.upto, summary.scores()
                ))
            return summary


def _inode(path: str | None) -> int | None:
    """A file put in place of the operations database starts a new summary."""
    try:
        return os.stat(path).st_ino if path else None
    except FileNotFoundError:
        return None


summaries = SummaryCache()
_running: set[asyncio.Task] = set()
_warming: WeakKeyDictionary = WeakKeyDictionary()  # each server's latest background reading


def warm_summary(datasette) -> None:
    """Start working out the summary in the background as the server starts (a whole reading of a
    million predictions takes seconds), so that the first request finds it done; after a batch is
    stored, the same brings it (and the scores the operations dashboard reads) up to date."""

    async def warm() -> None:
        ops, books = datasette.databases.get(OPERATIONS_DATABASE), datasette.databases.get(BOOKS_DATABASE)
        if ops is None or books is None or not books.path:
            return
        if not await ops.table_exists(operations.PREDICTIONS):
            return
        try:
            await summaries.get(ops, books)
        except Exception:  # a request will try again, and answer the error
            logger.exception("the predictions summary could not be worked out in the background")

    task = asyncio.get_running_loop().create_task(warm(), name="books-predictions-summary")
    _running.add(task)  # the event loop holds tasks weakly: kept until they end
    task.add_done_callback(_running.discard)
    _warming[datasette] = task



async def known_book_ids(db, payload: Any, max_rows: int) -> set[int]:
    """Which of the batch's integer ids are published books: one indexed query, whatever the
    catalogue's size (a batch over max_rows is refused before)."""
    rows = payload.get("predictions") if isinstance(payload, dict) else payload
    if not isinstance(rows, list) or len(rows) > max_rows:
        return set()
    ids = [row["id"] for row in rows if isinstance(row, dict) and type(row.get("id")) is int]
    found = await db.execute_fn(unbudgeted(lambda conn: conn.execute(
        "select id from books where id in (select value from json_each(:ids))", {"ids": json.dumps(ids)}
    ).fetchall()))
    return {row[0] for row in found}


async def post_predictions(request, datasette):
    actor = await require_permission(datasette, request, "books-api-predict")
    config = api_config(datasette)
    ops = await _predictions_store(datasette)
    payload = await read_json(request, config.max_body_bytes)
    known = await known_book_ids(books_database(datasette), payload, config.max_prediction_rows)
    batch = parse_batch(payload, known, config.max_prediction_rows)
    batch_id = uuid.uuid4().hex

    def write(conn):
        return operations.save_predictions(
            Database(conn), batch.rows, model=batch.model, batch_id=batch_id, actor=actor.get("id")
        )

    count = await ops.execute_write_fn(write)
    warm_summary(datasette)  # the dashboard's scores follow each batch
    return json_response(
        {"ok": True, "batch_id": batch_id, "model": batch.model, "count": count}, status=201
    )


async def list_predictions(request, datasette):
    path = "/api/v1/ml/predictions"
    ops = operations_database(datasette)
    args = query_values(path, request.args)
    filters = {"model": args["model"], "batch_id": args["batch"], "book_id": args["book_id"]}
    page = page_of(args, path)
    # No table yet (an operations database the crawler has not migrated): nothing stored.
    if not await ops.table_exists(operations.PREDICTIONS):
        return json_response(cursor_page_body(request, datasette, "predictions", [], 0, page, None))
    conditions = [f"{column} = :{column}" for column, value in filters.items() if value is not None]
    select = f"select {PREDICTION_COLUMNS} from {operations.PREDICTIONS}"
    page_sql, params = keyset_sql(select, conditions, BY_ID, page)
    params.update(filters)
    where = (" where " + " and ".join(conditions)) if conditions else ""
    # Counted up to COUNT_CAP + 1 rows, as the book lists are: a million predictions are not counted
    # on every page.
    counted = (await ops.execute(
        f"select count(*) from (select 1 from {operations.PREDICTIONS}{where} limit {COUNT_CAP + 1})", filters
    )).single_value()
    rows = [dict(row) for row in (await ops.execute(page_sql, params)).rows]
    rows, after = next_cursor(path, BY_ID, rows, page)
    body = cursor_page_body(
        request, datasette, "predictions", rows, min(counted, COUNT_CAP), page, after, counted <= COUNT_CAP
    )
    return json_response(body)


async def prediction_summary(request, datasette):
    ops = operations_database(datasette)
    model = query_values("/api/v1/ml/predictions/summary", request.args)["model"]
    if not await ops.table_exists(operations.PREDICTIONS):
        return json_response({"models": []})
    summary = await summaries.get(ops, books_database(datasette))
    return json_response({"models": summary.figures(model)})


async def _predictions_store(datasette):
    """The operations database, if a batch can be written there: 503 when it is read-only or has no
    predictions table (operations.py creates it; startup.py migrates before Datasette starts)."""
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
