"""Scraping jobs: the same `scrapy crawl books` an operator runs, as its own process (no Datasette
import; the API's views and schedule are books_scraper/api/scraping.py).

A job's process leads its own session, so the server that started it may stop or be replaced while
it runs. The crawl writes the job's state itself (books_scraper/extensions.py, JobReport); a server
only starts it, signals it (SIGTERM to its process group: Scrapy stops gracefully and publication
leaves the published file as it was) and closes the jobs whose process is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlite_utils import Database

from books_scraper import operations

PROJECT = Path(__file__).resolve().parents[1]  # where scrapy.cfg is
DEFAULT_START_URL = "https://books.toscrape.com/"
JOB_SETTING = "BOOKS_JOB_ID"
LOST = "the crawl process ended without reporting: killed, or the server died"
# A queued job gets its pid a few milliseconds after its row: one still without after this long was
# queued by a server that died before starting the crawl.
START_GRACE = timedelta(seconds=60)
INTERVAL = re.compile(r"([1-9][0-9]{0,8})([smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
INTERVAL_VARIABLE = "BOOKS_CRAWL_EVERY"

logger = logging.getLogger(__name__)


# --- The job's process ----------------------------------------------------------------------------


def job_command(job_id: int, books_db: Path, ops_db: Path) -> list[str]:
    """`scrapy crawl books` for this job, publishing the server's own files."""
    command = [sys.executable, "-m", "scrapy", "crawl", "books", "-s", f"{JOB_SETTING}={job_id}"]
    return command + ["-s", f"BOOKS_DB_PATH={books_db}", "-s", f"BOOKS_OPS_DB_PATH={ops_db}"]


def log_path(ops_db: Path, job_id: int) -> Path:
    """The crawl's output, beside the operations database."""
    return ops_db.with_name(f"scrape-job-{job_id}.log")


def start_process(job_id: int, books_db: Path, ops_db: Path) -> int:
    """Start the crawl in its own session (the environment, BOOKS_START_URL and the rest, inherited)
    and return its pid, which is also its process group's id."""
    with open(log_path(ops_db, job_id), "ab") as log:
        process = subprocess.Popen(
            job_command(job_id, books_db, ops_db), cwd=PROJECT, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    # Reaped when it ends, so a finished crawl is not left a zombie that looks alive.
    threading.Thread(target=process.wait, name=f"scrape-job-{job_id}", daemon=True).start()
    return process.pid


def process_alive(pid: int, job_id: int) -> bool:
    """Is `pid` still this job's crawl? Not merely a live pid: the kernel reuses them."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: trust the pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    # A zombie has no command line; another program's has no job setting.
    return f"{JOB_SETTING}={job_id}".encode() in cmdline.split(b"\0")


def is_lost(job: dict, now: datetime | None = None) -> bool:
    """A queued or running job no process will report on any more."""
    if job["pid"] is None:
        created = datetime.fromisoformat(job["created_at"])
        return (now or datetime.now(timezone.utc)) - created > START_GRACE
    return not process_alive(job["pid"], job["id"])


def stop_process(job: dict) -> bool:
    """SIGTERM to the job's process group (Scrapy's graceful shutdown); False if it is gone."""
    if job["pid"] is None or not process_alive(job["pid"], job["id"]):
        return False
    try:
        os.killpg(job["pid"], signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


# --- Jobs in the operations database --------------------------------------------------------------


def start_url(environ=os.environ) -> str:
    """The site the crawl will start from (settings.py reads the same variable)."""
    return environ.get("BOOKS_START_URL") or DEFAULT_START_URL


def queue(db: Database, trigger: str, actor: str | None, not_since: str | None = None) -> int:
    """A new queued job's id; operations.JobRefused while one is queued or running."""
    return operations.queue_job(
        db, trigger=trigger, actor=actor, start_url=start_url(), is_lost=is_lost, lost_reason=LOST,
        not_since=not_since,
    )


def close_lost(db: Database) -> list[int]:
    """Mark failed (or cancelled, when asked) the live jobs whose crawl process is gone."""
    closed = operations.close_lost_jobs(db, is_lost, LOST)
    for job_id in closed:
        logger.warning("scrape job %d: %s", job_id, LOST)
    return closed


def cancel(db: Database, job_id: int) -> dict | None:
    """Ask a live job to stop; None if there is no such job, operations.JobFinished if it ended.
    A job with a process gets SIGTERM (once: a second one would force an unclean stop) and reports
    `cancelled` itself; one without is closed here."""
    job = operations.request_cancel(db, job_id)
    if job is None:
        return None
    if job["cancel_requested"]:
        return job  # already signalled
    if not stop_process(job):
        if job["pid"] is not None or is_lost(job):
            operations.cancel_job(db, job_id, "cancelled on request before the crawl started")
        # else: queued, its process about to start; JobReport reads the flag and stops the crawl
    return job


# --- The schedule ---------------------------------------------------------------------------------


class IntervalError(ValueError):
    pass


def parse_interval(text: str | None) -> timedelta | None:
    """BOOKS_CRAWL_EVERY: `90s`, `30m`, `6h`, `1d`; unset or empty is off."""
    if text is None or text == "":
        return None
    match = INTERVAL.fullmatch(text)
    if not match:
        raise IntervalError(
            f"{INTERVAL_VARIABLE}={text!r} is not an interval such as 90s, 30m, 6h or 1d"
        )
    return timedelta(seconds=int(match[1]) * UNITS[match[2]])


async def run_schedule(every: timedelta, start_job: Callable[[str], Awaitable[object]]) -> None:
    """Every `every`, start_job(not_since): a scheduled job unless one is queued or running or
    another server process's schedule started one within the last interval."""
    while True:
        await asyncio.sleep(every.total_seconds())
        # Half an interval: two servers' timers (one replacing the other) never both start one.
        not_since = (datetime.now(timezone.utc) - every / 2).isoformat(timespec="seconds")
        try:
            await start_job(not_since)
        except operations.JobRefused as refused:
            logger.info("scheduled crawl skipped: %s", refused)
        except Exception:
            logger.exception("scheduled crawl could not start")
