"""The operational database: the writable tables beside the read-only books database.

`crawl_runs` here is the operator's journal of every crawl attempt (running, published, failed,
cancelled, abandoned); the books database keeps only the runs that built it. `scrape_jobs` holds the crawls
started from the API or the schedule; `predictions` the models' batches.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


RUN_CANCELLED = "cancelled"


def cancel_run(db: Database, run_id: int, message: str) -> None:
    """A scraping job's crawl stopped on request: its journal entry says `cancelled` instead of the
    `failed` (or, if its process was killed, `running`) it was left with, so an operator does not read
    it as broken, and the job's reason replaces the crawl's own ("stopped by a signal", recorded by
    publication). Like a failed run it published nothing; a published run is never changed."""
    db.execute(
        f"update {CRAWL_RUNS} set status = ?, message = ?, finished_at = coalesce(finished_at, ?)"
        f" where id = ? and status in ('running', 'failed', '{RUN_CANCELLED}')",
        [RUN_CANCELLED, message, utc_now(), run_id],
    )


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


# --- Scraping jobs: `scrapy crawl books` runs started from the API or the schedule ---------------
# The crawl process reports its own state here (books_scraper/extensions.py, JobReport); any server
# process reads, cancels and closes lost jobs (books_scraper/jobs.py). A job never leaves a final
# status: every update of a live job is conditional on it still being queued or running.

SCRAPE_JOBS = "scrape_jobs"
QUEUED, RUNNING = "queued", "running"
SUCCEEDED, JOB_FAILED, CANCELLED = "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
_LIVE = f"status in ('{QUEUED}', '{RUNNING}')"


@migrations()
def m005_scrape_jobs(db: Database) -> None:
    db[SCRAPE_JOBS].create(
        {
            "id": int,
            "status": str,  # queued, running, succeeded, failed, cancelled
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "trigger": str,  # api or schedule
            "actor": str,
            "start_url": str,
            "pid": int,  # the crawl process, leader of its own process group
            "crawl_run_id": int,  # its crawl_runs entry
            "progress": str,  # JSON: books, expected, pages, failed_pages, drops
            "published": int,
            "books": int,  # books published
            "reason": str,  # one line, when failed or cancelled
            "cancel_requested": int,
        },
        pk="id",
        not_null={"status", "created_at", "trigger", "published", "cancel_requested"},
        defaults={"published": 0, "cancel_requested": 0},
    )
    db[SCRAPE_JOBS].create_index(["status"])


class JobRefused(RuntimeError):
    """No new job: `job_id` is the one in the way."""

    def __init__(self, message: str, job_id: int) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobFinished(RuntimeError):
    """A job that already ended cannot be cancelled."""


@contextmanager
def immediate(db: Database) -> Iterator[None]:
    """One write transaction that holds SQLite's write lock from its first read: what it reads stays
    true until it commits, across every process writing this file."""
    db.execute("begin immediate")
    try:
        yield
    except BaseException:
        db.conn.rollback()
        raise
    db.conn.commit()


def active_jobs(db: Database) -> list[dict]:
    return list(db.query(f"select * from {SCRAPE_JOBS} where {_LIVE} order by id"))


def close_lost_jobs(db: Database, is_lost: Callable[[dict], bool], reason: str) -> list[int]:
    """Mark the live jobs `is_lost` says no process runs any more: cancelled when a cancel was asked,
    failed otherwise. Call it inside a transaction or on its own (each update re-checks the status)."""
    closed = []
    for job in active_jobs(db):
        if is_lost(job):
            status = CANCELLED if job["cancel_requested"] else JOB_FAILED
            why = "cancelled before the crawl reported" if job["cancel_requested"] else reason
            if _finish(db, job["id"], {"status": status, "reason": why}):
                closed.append(job["id"])
                if status == CANCELLED and job["crawl_run_id"] is not None:
                    cancel_run(db, job["crawl_run_id"], why)
    return closed


def queue_job(
    db: Database,
    *,
    trigger: str,
    actor: str | None,
    start_url: str,
    is_lost: Callable[[dict], bool],
    lost_reason: str,
    not_since: str | None = None,
) -> int:
    """Insert a queued job and return its id, in one write transaction: refused (JobRefused) while
    another job is queued or running, or, with `not_since`, when a job of this trigger was created
    at or after that time (another server process's schedule got there first)."""
    with immediate(db):
        close_lost_jobs(db, is_lost, lost_reason)
        active = active_jobs(db)
        if active:
            job = active[-1]
            raise JobRefused(f"job {job['id']} is {job['status']}", job["id"])
        if not_since is not None:
            recent = list(db.query(
                f"select id from {SCRAPE_JOBS} where trigger = ? and created_at >= ?"
                " order by id desc limit 1", [trigger, not_since],
            ))
            if recent:
                raise JobRefused(f"job {recent[0]['id']} was started since {not_since}", recent[0]["id"])
        table = db[SCRAPE_JOBS]
        table.insert({
            "status": QUEUED, "created_at": utc_now(), "trigger": trigger, "actor": actor,
            "start_url": start_url, "published": 0, "cancel_requested": 0,
        })
        return table.last_pk


def _update_live(db: Database, job_id: int, values: dict[str, Any], extra_where: str = "") -> bool:
    assignments = ", ".join(f"[{name}] = :{name}" for name in values)
    cursor = db.execute(
        f"update {SCRAPE_JOBS} set {assignments} where id = :job_id and {_LIVE}{extra_where}",
        {**values, "job_id": job_id},
    )
    return cursor.rowcount > 0


def _finish(db: Database, job_id: int, values: dict[str, Any]) -> bool:
    return _update_live(db, job_id, {**values, "finished_at": utc_now()})


def job_process(db: Database, job_id: int, pid: int) -> None:
    """The server started the job's process."""
    with db.conn:
        _update_live(db, job_id, {"pid": pid}, " and pid is null")


def job_started(db: Database, job_id: int, pid: int, start_url: str) -> None:
    """The crawl process opened its spider."""
    with db.conn:
        _update_live(db, job_id, {"status": RUNNING, "started_at": utc_now(), "pid": pid, "start_url": start_url})


def job_progress(db: Database, job_id: int, progress: dict[str, Any], crawl_run_id: int | None) -> None:
    with db.conn:
        _update_live(db, job_id, {"progress": json.dumps(progress), "crawl_run_id": crawl_run_id})


def job_ended(
    db: Database,
    job_id: int,
    *,
    published: bool,
    books: int | None,
    reason: str | None,
    progress: dict[str, Any],
    crawl_run_id: int | None,
    stopped: bool = False,
) -> str:
    """The crawl process's final word; returns the status: succeeded when it published, else
    cancelled when a cancel was asked (its crawl_runs entry too) or a signal stopped the crawl
    (`stopped`: someone's SIGTERM, with `reason` saying so), else failed."""
    with db.conn:
        requested = bool(db.execute(
            f"select cancel_requested from {SCRAPE_JOBS} where id = ?", [job_id]
        ).fetchone()[0])
        status = SUCCEEDED if published else CANCELLED if requested or stopped else JOB_FAILED
        if status == CANCELLED and requested:
            reason = "cancelled on request; the published database was left as it was"
        _finish(db, job_id, {
            "status": status, "published": int(published), "books": books,
            "reason": None if published else reason, "progress": json.dumps(progress),
            "crawl_run_id": crawl_run_id,
        })
        if status == CANCELLED and crawl_run_id is not None:
            cancel_run(db, crawl_run_id, reason)
    return status


def fail_job(db: Database, job_id: int, reason: str) -> None:
    with db.conn:
        _finish(db, job_id, {"status": JOB_FAILED, "reason": reason})


def request_cancel(db: Database, job_id: int) -> dict | None:
    """Flag a live job for cancelling and return it as it was before (None: no such job); a job
    that already ended raises JobFinished."""
    with immediate(db):
        rows = list(db.query(f"select * from {SCRAPE_JOBS} where id = ?", [job_id]))
        if not rows:
            return None
        job = rows[0]
        if job["status"] not in ACTIVE:
            raise JobFinished(f"job {job_id} already ended: {job['status']}")
        _update_live(db, job_id, {"cancel_requested": 1})
        return job


def cancel_job(db: Database, job_id: int, reason: str) -> None:
    """Close a job no process will report on (it never started, or its process is gone)."""
    with db.conn:
        _finish(db, job_id, {"status": CANCELLED, "reason": reason})


@migrations()
def m006_predictions_by_model(db: Database) -> None:
    # GET /api/v1/ml/predictions?model= pages a model's rows in id order: (model, rowid) is that order.
    db[PREDICTIONS].create_index(["model"], if_not_exists=True)


# The predictions summary per model as a server last worked it out (api/predictions.py), against the
# books publication named by books_hash: the operations dashboard reads these few rows instead of
# scoring every prediction on each view.
MODEL_SCORES = "model_scores"


@migrations()
def m007_model_scores(db: Database) -> None:
    db[MODEL_SCORES].create(
        {
            "model": str,
            "books_hash": str,  # the publication the predictions were scored against
            "upto": int,  # the largest prediction id read
            "predictions": int,
            "batches": int,
            "evaluated": int,  # predictions of books still published
            "mae": float,
            "rmse": float,
            "last_prediction_at": str,
            "computed_at": str,
        },
        pk=("model", "books_hash"),
    )


def save_model_scores(db: Database, books_hash: str, upto: int, figures: list[dict[str, Any]]) -> None:
    """Replace the scores against one publication with `figures` (the summary's rows, one per model)."""
    computed_at = utc_now()
    with db.atomic():
        db.execute(f"delete from {MODEL_SCORES} where books_hash = ?", [books_hash])
        db[MODEL_SCORES].insert_all(
            {**row, "books_hash": books_hash, "upto": upto, "computed_at": computed_at} for row in figures
        )


@migrations()
def m008_model_scores_sums(db: Database) -> None:
    # The sums behind MAE and RMSE, so a restarted server carries on from the stored scores instead
    # of reading every prediction again.
    db[MODEL_SCORES].add_column("abs_error", float)
    db[MODEL_SCORES].add_column("squared_error", float)


def model_scores(db: Database, books_hash: str) -> list[dict[str, Any]]:
    """The stored scores against one publication, one row per model."""
    return list(db.query(f"select * from {MODEL_SCORES} where books_hash = ? order by model", [books_hash]))
