"""Scraping jobs: /api/v1/scraping/jobs (+ /{id}) and the original clients' /scraping/trigger and
/scraping/status, their views and their SQL; the scheduled crawls (BOOKS_CRAWL_EVERY) and the
startup check that closes lost jobs. Every route needs the `books-api-crawl` permission.

The jobs live in the operations database (schema: books_scraper/operations.py); starting, signalling
and judging a job's process is books_scraper/jobs.py's; the crawl reports its own progress.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from pathlib import Path

import click
from sqlite_utils import Database

from books_scraper import jobs, operations
from books_scraper.api.errors import ApiError
from books_scraper.api.params import page_of, query_values
from books_scraper.api.web import (
    api_route, books_database, json_response, operations_database, page_body, require_permission,
)
from books_scraper.web.served_metadata import OPERATIONS_DATABASE

ACTION = "books-api-crawl"
JOBS_PATH = "/api/v1/scraping/jobs"
JOB_COLUMNS = (
    "id, status, trigger, actor, created_at, started_at, finished_at, start_url, crawl_run_id,"
    " progress, published, books, reason, cancel_requested"
)
JOB_SQL = f"select {JOB_COLUMNS} from {operations.SCRAPE_JOBS} where id = :id"
LATEST_JOB_SQL = f"select {JOB_COLUMNS} from {operations.SCRAPE_JOBS} order by id desc limit 1"
JOBS_PAGE_SQL = (
    f"select {JOB_COLUMNS} from {operations.SCRAPE_JOBS} order by id desc limit :limit offset :offset"
)
JOBS_COUNT_SQL = f"select count(*) from {operations.SCRAPE_JOBS}"

logger = logging.getLogger(__name__)


def job_url(job_id: int) -> str:
    return f"{JOBS_PATH}/{job_id}"


def job_body(row) -> dict:
    job = dict(row)
    job["progress"] = json.loads(job["progress"]) if job["progress"] else None
    job["published"] = bool(job["published"])
    job["cancel_requested"] = bool(job["cancel_requested"])
    job["url"] = job_url(job["id"])
    return job


# --- Reading ----------------------------------------------------------------------------------------


async def _jobs_db(datasette):
    """The operations database if it has the jobs table (None: no job was ever possible there),
    its lost jobs closed first when it is writable."""
    ops = operations_database(datasette)
    if not await ops.table_exists(operations.SCRAPE_JOBS):
        return None
    if ops.is_mutable:
        await ops.execute_write_fn(lambda conn: jobs.close_lost(Database(conn)))
    return ops


async def _job(ops, job_id: int) -> dict:
    row = (await ops.execute(JOB_SQL, {"id": job_id})).first()
    if row is None:
        raise ApiError(404, f"no scraping job has id {job_id}", "job_not_found")
    return job_body(row)


async def list_jobs(request, datasette):
    await require_permission(datasette, request, ACTION)
    page = page_of(query_values(JOBS_PATH, request.args))
    ops = await _jobs_db(datasette)
    if ops is None:
        return json_response(page_body(request, datasette, "jobs", [], 0, page))
    total = (await ops.execute(JOBS_COUNT_SQL)).single_value()
    rows = await ops.execute(JOBS_PAGE_SQL, {"limit": page.limit, "offset": page.offset})
    return json_response(page_body(request, datasette, "jobs", [job_body(r) for r in rows.rows], total, page))


async def one_job(request, datasette):
    await require_permission(datasette, request, ACTION)
    job_id = int(request.url_vars["id"])
    ops = await _jobs_db(datasette)
    if ops is None:
        raise ApiError(404, f"no scraping job has id {job_id}", "job_not_found")
    return json_response(await _job(ops, job_id))


async def latest_job(request, datasette):
    await require_permission(datasette, request, ACTION)
    ops = await _jobs_db(datasette)
    row = None if ops is None else (await ops.execute(LATEST_JOB_SQL)).first()
    if row is None:
        raise ApiError(404, "no scraping job has run yet", "no_jobs")
    return json_response(job_body(row))


# --- Starting and cancelling ------------------------------------------------------------------------


def _writable_jobs_db(datasette):
    ops = operations_database(datasette)
    if not ops.is_mutable:
        raise ApiError(503, f"the {ops.name!r} database is read-only here", "database_read_only")
    return ops


def published_files(datasette, ops, environ=os.environ) -> tuple[Path, Path]:
    """The books file a job publishes and the operations file it reports to: BOOKS_DB_PATH and
    BOOKS_OPS_DB_PATH when the server has them (a live-reload worker serves a pinned link to one
    version, not the published file: books_scraper/web/supervisor.py), else the files served."""
    books_db = environ.get("BOOKS_DB_PATH") or books_database(datasette).path
    return Path(books_db), Path(environ.get("BOOKS_OPS_DB_PATH") or ops.path)


async def start_job(datasette, trigger: str, actor: str | None, not_since: str | None = None) -> dict:
    """Queue a job (operations.JobRefused while one is queued or running), start its crawl, return it."""
    ops = _writable_jobs_db(datasette)
    if not await ops.table_exists(operations.SCRAPE_JOBS):
        raise ApiError(
            503, f"the {ops.name!r} database has no {operations.SCRAPE_JOBS} table: migrate it first "
            "(python -m books_scraper.serve does)", "database_unavailable",
        )
    books_db, ops_db = published_files(datasette, ops)
    job_id = await ops.execute_write_fn(lambda conn: jobs.queue(Database(conn), trigger, actor, not_since))
    try:
        pid = jobs.start_process(job_id, books_db, ops_db)
    except OSError as error:
        reason = f"could not start the crawl: {error}"
        await ops.execute_write_fn(lambda conn: operations.fail_job(Database(conn), job_id, reason))
        raise ApiError(503, reason, "job_not_started", job_id=job_id) from None
    await ops.execute_write_fn(lambda conn: operations.job_process(Database(conn), job_id, pid))
    logger.info("scrape job %d started (%s, pid %d)", job_id, trigger, pid)
    return await _job(ops, job_id)


async def post_job(request, datasette):
    actor = await require_permission(datasette, request, ACTION)
    try:
        job = await start_job(datasette, "api", actor.get("id"))
    except operations.JobRefused as refused:
        raise ApiError(
            409, f"a crawl is already under way: {refused}", "job_running", job_id=refused.job_id,
            headers={"Location": job_url(refused.job_id)},
        ) from None
    return json_response(job, status=202, headers={"Location": job["url"]})


async def delete_job(request, datasette):
    await require_permission(datasette, request, ACTION)
    job_id = int(request.url_vars["id"])
    ops = _writable_jobs_db(datasette)
    if not await ops.table_exists(operations.SCRAPE_JOBS):
        raise ApiError(404, f"no scraping job has id {job_id}", "job_not_found")
    try:
        before = await ops.execute_write_fn(lambda conn: jobs.cancel(Database(conn), job_id))
    except operations.JobFinished as finished:
        raise ApiError(409, str(finished), "job_finished", job_id=job_id) from None
    if before is None:
        raise ApiError(404, f"no scraping job has id {job_id}", "job_not_found")
    job = await _job(ops, job_id)
    # 202: the crawl is stopping and will report `cancelled` itself; 200: it is cancelled already.
    return json_response(job, status=200 if job["status"] == operations.CANCELLED else 202)


# --- Startup: lost jobs, and the schedule -----------------------------------------------------------

_schedules: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # datasette -> its interval
_tasks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # datasette -> the running schedule


async def startup(datasette) -> None:
    """Check BOOKS_CRAWL_EVERY (a bad value stops the server with one line) and close the jobs whose
    crawl process is gone (the server that started them died, or they were killed)."""
    try:
        every = jobs.parse_interval(os.environ.get(jobs.INTERVAL_VARIABLE))
    except jobs.IntervalError as error:
        raise click.ClickException(str(error)) from None
    ops = datasette.databases.get(OPERATIONS_DATABASE)
    writable = ops is not None and ops.is_mutable and await ops.table_exists(operations.SCRAPE_JOBS)
    if every is not None and not writable:
        raise click.ClickException(
            f"{jobs.INTERVAL_VARIABLE} needs the writable operations database with its "
            f"{operations.SCRAPE_JOBS} table (python -m books_scraper.serve creates it)"
        )
    if writable:
        await ops.execute_write_fn(lambda conn: jobs.close_lost(Database(conn)))
    if every is not None:
        _schedules[datasette] = every


def schedule_wrapper(datasette):
    """An ASGI wrapper that starts the schedule on the loop that serves requests. `datasette serve`
    runs the startup hooks on a loop of their own and closes it (datasette.cli.run_sync): a task
    made there would never run. Under uvicorn the lifespan startup is the first call here, after
    the startup hooks; in process (datasette.client) the first request runs them, inside."""

    def ensure_schedule() -> None:
        every = _schedules.get(datasette)
        if every is not None and datasette not in _tasks:
            scheduled = jobs.run_schedule(
                every, lambda not_since: start_job(datasette, "schedule", None, not_since)
            )
            _tasks[datasette] = asyncio.get_running_loop().create_task(scheduled, name="books-crawl-schedule")
            logger.info("scheduled crawls every %s", every)

    def wrap(app):
        async def asgi(scope, receive, send):
            ensure_schedule()
            await app(scope, receive, send)
            if scope["type"] != "lifespan":
                ensure_schedule()

        return asgi

    return wrap


def stop_schedule(datasette) -> None:
    """No more scheduled crawls from this instance (a job under way goes on)."""
    _schedules.pop(datasette, None)
    task = _tasks.pop(datasette, None)
    if task is not None:
        task.cancel()


# [0-9]+ ids (not \d, which takes any Unicode digit), as /api/v1/books/{id}.
ROUTES = [
    (r"^/api/v1/scraping/jobs$", api_route(get=list_jobs, post=post_job)),
    (r"^/api/v1/scraping/jobs/(?P<id>[0-9]{1,18})$", api_route(get=one_job, delete=delete_job)),
    (r"^/api/v1/scraping/trigger$", api_route(post=post_job)),
    (r"^/api/v1/scraping/status$", api_route(get=latest_job)),
]
