"""The operational database: the writable tables beside the read-only books database.

`crawl_runs` here is the operator's journal of every crawl attempt (running, published, failed,
abandoned); the books database keeps only the runs that built it.
"""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database, Migrations

from books_scraper.storage import (
    CRAWL_RUNS,
    add_crawl_runs_failures,
    add_crawl_runs_removed,
    create_crawl_runs,
    save_crawl_run,
    utc_now,
)

migrations = Migrations("books_operations")
migrations(name="m001_crawl_runs")(create_crawl_runs)


def open_operations_db(path: str) -> Database:
    db = Database(path)
    # Readers (Datasette) and the crawler write here at the same time.
    db.enable_wal()
    migrations.apply(db)
    return db


def start_run(db: Database, start_url: str) -> int:
    """Record a new crawl attempt and return its id; earlier runs left 'running' were killed."""
    with db.conn:
        db.execute(
            f"update {CRAWL_RUNS} set status = 'abandoned', finished_at = ? where status = 'running'",
            [utc_now()],
        )
        table = db[CRAWL_RUNS]
        table.insert({"started_at": utc_now(), "status": "running", "start_url": start_url})
        return table.last_pk


def record_run(db: Database, run: dict) -> None:
    with db.conn:
        save_crawl_run(db, run)


def fail_run(db: Database, run_id: int, message: str) -> None:
    """Close a run that stopped before it had anything to record but why."""
    with db.conn:
        db[CRAWL_RUNS].update(run_id, {"finished_at": utc_now(), "status": "failed", "message": message})


PREDICTIONS = "predictions"


@migrations()
def m002_predictions(db: Database) -> None:
    # Model outputs posted through the API; ratings are compared with the books database's.
    db[PREDICTIONS].create(
        {
            "id": int,
            "batch_id": str,
            "model": str,
            "book_id": int,
            "predicted_rating": float,
            "actor": str,
            "created_at": str,
        },
        pk="id",
        not_null={"batch_id", "model", "book_id", "predicted_rating", "created_at"},
    )
    db[PREDICTIONS].create_index(["model", "batch_id"])
    db[PREDICTIONS].create_index(["batch_id"])
    db[PREDICTIONS].create_index(["book_id"])


def save_predictions(
    db: Database,
    predictions: list[dict[str, Any]],
    *,
    model: str,
    batch_id: str,
    actor: str | None,
) -> int:
    """Store one validated batch in a single transaction; return the rows written."""
    created_at = utc_now()
    rows = [
        {
            "batch_id": batch_id,
            "model": model,
            "book_id": p["id"],
            "predicted_rating": float(p["predicted_rating"]),
            "actor": actor,
            "created_at": created_at,
        }
        for p in predictions
    ]
    with db.atomic():
        db[PREDICTIONS].insert_all(rows)
    return len(rows)


migrations(name="m003_crawl_runs_removed")(add_crawl_runs_removed)
migrations(name="m004_crawl_runs_failures")(add_crawl_runs_failures)
