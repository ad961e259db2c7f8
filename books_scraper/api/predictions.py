"""Prediction batches: validation of a posted batch (whole batch or nothing) and the scoring summary."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from books_scraper.api.errors import ApiError
from books_scraper.api.params import MODEL_PATTERN, pattern_matches

DEFAULT_MODEL = "default"
MIN_RATING, MAX_RATING = 0.0, 5.0


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
