"""Safe publication of the books database (no Scrapy import).

The crawl writes to a staging copy beside the published file; only a crawl that finished normally
and passes the sanity checks replaces the published file, atomically, with os.replace. Anything
else leaves the published file byte-for-byte untouched.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class CrawlLocked(RuntimeError):
    """Another crawl holds the lock for this database."""


def staging_path(published: Path) -> Path:
    return published.with_name(f".{published.name}.staging")


@contextmanager
def crawl_lock(published: Path) -> Iterator[None]:
    """Hold an exclusive lock so two crawls never stage or publish the same file at once."""
    published.parent.mkdir(parents=True, exist_ok=True)
    with open(published.with_name(f".{published.name}.lock"), "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CrawlLocked(f"another crawl is running for {published}") from None
        yield


def prepare_staging(published: Path) -> Path:
    """A fresh staging file: a consistent copy of the published database, or nothing."""
    staging = staging_path(published)
    staging.unlink(missing_ok=True)  # left over from a killed crawl
    if published.exists():
        source = sqlite3.connect(f"file:{published}?mode=ro", uri=True)
        target = sqlite3.connect(staging)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
    return staging


def published_book_count(published: Path) -> int:
    """The books published, as their publication counted them (table_counts), else counted."""
    if not published.exists():
        return 0
    conn = sqlite3.connect(f"file:{published}?mode=ro", uri=True)
    try:
        try:
            row = conn.execute("select count from table_counts where name = 'books'").fetchone()
        except sqlite3.OperationalError:  # published by a version without table_counts
            row = None
        return row[0] if row else conn.execute("select count(*) from books").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0
    finally:
        conn.close()


def republish(published: Path, rework: Callable[[Path], None]) -> None:
    """Publish a reworked copy of the published file the way a crawl publishes: under the crawl
    lock, rework(staging) on a staging copy, then the atomic swap; on any error the published file
    is left untouched (CrawlLocked when a crawl is running)."""
    with crawl_lock(published):
        staging = prepare_staging(published)
        try:
            rework(staging)
            replace_atomically(staging, published)
        finally:
            staging.unlink(missing_ok=True)


NO_BOOKS = "crawl scraped no books"


def sanity_problem(
    finish_reason: str, books_this_run: int, books_published: int, allow_shrink: bool
) -> str | None:
    """Why this crawl must not be published, or None when it may be."""
    if finish_reason != "finished":
        return f"crawl did not finish normally (reason: {finish_reason})"
    if books_this_run < 1:
        return NO_BOOKS
    if not allow_shrink and books_this_run * 2 < books_published:
        return (
            f"crawl scraped {books_this_run} books, fewer than half of the {books_published} "
            "published; set BOOKS_ALLOW_SHRINK=1 to publish anyway"
        )
    return None


def replace_atomically(staging: Path, published: Path) -> None:
    """Make the staging file durable, then swap it in with one rename."""
    with open(staging, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, published)
    directory = os.open(published.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
