"""The real `scrapy crawl books` under faults: broken answers from the site, a stop by signal (Ctrl-C,
SIGTERM), a full disk.

What an operator expects of each: a page is fetched again and kept, or counted as failed with its
reason (`Failed to fetch <url>: <reason>`, `pages/failed/<reason>`, `crawl_runs.errors`) and its
book keeps its last good row; no half-read record is published; a crawl that cannot finish leaves
the published file byte-for-byte as it was and says why in one line.
"""

from __future__ import annotations

import hashlib
import json
import re
import resource
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sitebuilder import Book, build_site, sample_books
from sqlite_utils import Database
from support import (
    PROJECT,
    SiteServer,
    charset,
    crawl,
    crawl_command,
    crawl_env,
    redirect_loop,
    reset,
    short_body,
    slow_body,
    truncated,
    unavailable,
)

from books_scraper.middlewares import retry_after_seconds
from books_scraper.publication import STOPPED

# Faults cost seconds at the default settings: one retry, a one-second timeout.
ATTEMPTS = 2
FAULT_SETTINGS = {"DOWNLOAD_TIMEOUT": "1", "RETRY_TIMES": str(ATTEMPTS - 1)}
MID_TABLE = b"<tr><th>Tax</th>"  # a product page cut here has a title, a price and half its table


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def last_run(path: Path) -> dict:
    return list(Database(path)["crawl_runs"].rows_where(order_by="id desc", limit=1))[0]


def failed_pages(stderr: str) -> dict[str, int]:
    """The `pages/failed/<reason>` counts from the stats Scrapy logs at the end of the crawl."""
    return {reason: int(n) for reason, n in re.findall(r"'pages/failed/([^']+)': (\d+)", stderr)}


@dataclass
class Published:
    """A catalogue of 45 books and the databases a clean crawl of it published."""

    root: Path
    books: list[Book]
    data: Path  # books.db and operations.db

    def copy_to(self, tmp_path: Path) -> Path:
        """A private copy of the published databases; returns the books database's path."""
        shutil.copytree(self.data, tmp_path / "data")
        return tmp_path / "data" / "books.db"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Published:
    tmp = tmp_path_factory.mktemp("published")
    books = sample_books()
    root = build_site(tmp / "site", books)
    with SiteServer(root) as server:
        result = crawl(server.url, tmp / "data" / "books.db")
    assert result.returncode == 0, result.stderr[-2000:]
    return Published(root, books, tmp / "data")


@pytest.fixture
def site(published):
    with SiteServer(published.root) as server:
        yield server


@pytest.fixture
def db_path(published, tmp_path) -> Path:
    return published.copy_to(tmp_path)


# --- One crawl, one product page per fault -------------------------------------------------------

@dataclass
class Case:
    faults: list  # what the page answers, one entry per request, then the page itself
    outcome: str  # "refreshed": the book has the site's new data; "kept": its last good row
    requests: int  # how many times the crawl asked for the page
    reason: str | None = None  # of a page that failed


CASES = {
    "503-with-retry-after-then-the-page": Case([unavailable(1)], "refreshed", 2),
    "503-with-retry-after-every-time": Case([unavailable(1)] * ATTEMPTS, "kept", 2, "HTTP 503"),
    "connection-reset-then-the-page": Case([reset], "refreshed", 2),
    "connection-reset-every-time": Case([reset] * ATTEMPTS, "kept", 2, "connection lost"),
    "body-slower-than-the-timeout-then-the-page": Case([slow_body()], "refreshed", 2),
    "body-slower-than-the-timeout-every-time": Case([slow_body()] * ATTEMPTS, "kept", 2, "timeout"),
    "page-cut-mid-table-then-the-whole-page": Case([truncated(MID_TABLE)], "refreshed", 2),
    "page-cut-mid-table-every-time": Case(
        [truncated(MID_TABLE)] * ATTEMPTS, "kept", 2, "incomplete page"
    ),
    "body-shorter-than-its-content-length": Case(
        [short_body] * ATTEMPTS, "kept", 2, "body shorter than its Content-Length"
    ),
    "utf-8-page-declared-latin-1": Case([charset("iso-8859-1")], "refreshed", 1),
    "windows-1252-page-declared-utf-8": Case([charset("utf-8", encoding="cp1252")], "refreshed", 1),
    "redirect-loop": Case([redirect_loop] * ATTEMPTS, "kept", 1, "redirect loop"),
}


@dataclass
class FaultyCrawl:
    result: subprocess.CompletedProcess
    before: Path  # the published database before this crawl
    after: Path
    changed: dict[str, Book]  # case -> the book as the site now shows it
    requests: dict[str, int]  # case -> requests for its page
    gaps: dict[str, list[float]]  # case -> seconds between one request for its page and the next


@pytest.fixture(scope="module")
def faulty_crawl(published, tmp_path_factory) -> FaultyCrawl:
    """A second crawl of the catalogue in which every faulty book has a new title and price."""
    tmp = tmp_path_factory.mktemp("faulty")
    db_path = published.copy_to(tmp)
    books = list(published.books)
    changed = {}
    for number, case in enumerate(CASES, start=21):
        title, price = f"Révisé n° {number} — l'été", f"£{200 + number}.00"  # non-ASCII
        book = replace(books[number - 1], title=title, price=price)
        books[number - 1] = changed[case] = book
    root = build_site(tmp / "site", books)
    with SiteServer(root) as server:
        for case, book in changed.items():
            server.faults["/" + book.path] = list(CASES[case].faults)
        result = crawl(server.url, db_path, **FAULT_SETTINGS)
    requests = {case: server.requests["/" + book.path] for case, book in changed.items()}
    arrivals = {case: server.arrivals.get("/" + book.path, []) for case, book in changed.items()}
    gaps = {case: [b - a for a, b in zip(times, times[1:])] for case, times in arrivals.items()}
    return FaultyCrawl(result, published.data / "books.db", db_path, changed, requests, gaps)


@pytest.mark.parametrize("case", CASES)
def test_a_faulty_page_is_refetched_or_counted_and_its_book_keeps_its_row(faulty_crawl, case):
    expected, book = CASES[case], faulty_crawl.changed[case]
    assert faulty_crawl.requests[case] == expected.requests
    old = Database(faulty_crawl.before)["books"].get(book.id)
    row = Database(faulty_crawl.after)["books"].get(book.id)
    if expected.outcome == "refreshed":
        assert (row["title"], row["price"]) == (book.title, float(book.price[1:]))
        assert row["number_of_reviews"] == 0 and row["tax"] == 0.0
    else:
        assert row == old  # the last good row, not a half-read one
        line = rf"Failed to fetch http://\S+/{re.escape(book.path)}: {re.escape(expected.reason)}$"
        assert re.search(line, faulty_crawl.result.stderr, re.MULTILINE)


def test_a_crawl_with_faulty_pages_publishes_the_rest_and_counts_each_failure(faulty_crawl):
    result = faulty_crawl.result
    assert result.returncode == 0, result.stderr[-2000:]
    assert "internal meta keys" not in result.stderr  # Scrapy's warning about retries from callbacks
    failed = [case for case, expected in CASES.items() if expected.outcome == "kept"]
    assert failed_pages(result.stderr) == {CASES[case].reason: 1 for case in failed}
    run = last_run(faulty_crawl.after)
    assert (run["status"], run["books"], run["errors"]) == ("published", 45 - len(failed), len(failed))
    assert json.loads(run["failures"]) == {CASES[case].reason: 1 for case in failed}
    assert (run["dropped"], run["removed"]) == (0, 0)
    assert Database(faulty_crawl.after)["books"].count == 45
    journal = last_run(faulty_crawl.after.with_name("operations.db"))
    assert {k: journal[k] for k in run} == run


def test_a_503_is_fetched_again_only_after_the_seconds_its_retry_after_asks_for(faulty_crawl):
    for case in ("503-with-retry-after-then-the-page", "503-with-retry-after-every-time"):
        [gap] = faulty_crawl.gaps[case]
        assert gap >= 1.0, case  # unavailable(1): Retry-After: 1


@pytest.mark.parametrize(
    "header,seconds",
    [
        pytest.param(b"5", 5, id="seconds-are-waited"),
        pytest.param(b"0", 0, id="zero-seconds-retries-at-once"),
        pytest.param(b"3600", 60, id="an-hour-is-cut-to-the-bound"),
        pytest.param(b"Wed, 21 Oct 2099 07:28:00 GMT", 60, id="a-far-date-is-cut-to-the-bound"),
        pytest.param(b"Wed, 21 Oct 2015 07:28:00 GMT", 0, id="a-past-date-retries-at-once"),
        pytest.param(b"-5", 0, id="a-negative-number-retries-at-once"),
        pytest.param(b"soon", 0, id="text-that-is-neither-retries-at-once"),
        pytest.param(None, 0, id="no-header-retries-at-once"),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_bounded(header, seconds):
    assert retry_after_seconds(header, at_most=60) == seconds


def test_a_listing_page_cut_mid_way_is_counted_and_retires_no_book(site, db_path):
    site.faults["/catalogue/page-3.html"] = [truncated(b'title="Book number 43"')] * ATTEMPTS
    result = crawl(site.url, db_path, **FAULT_SETTINGS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert failed_pages(result.stderr) == {"incomplete page": 1}
    assert "no book is retired" in result.stderr
    run = last_run(db_path)
    assert (run["books"], run["errors"], run["removed"]) == (40, 1, 0)
    assert Database(db_path)["books"].count == 45


@pytest.mark.parametrize(
    "fault,reason",
    [
        pytest.param(reset, "connection lost", id="connection-reset"),
        pytest.param(redirect_loop, "redirect loop", id="redirect-loop"),
    ],
)
def test_a_site_whose_first_page_fails_leaves_the_published_file_identical(site, db_path, fault, reason):
    before = digest(db_path)
    site.faults["/"] = [fault] * ATTEMPTS
    result = crawl(site.url, db_path, **FAULT_SETTINGS)
    assert result.returncode == 1
    why = f"crawl scraped no books: 1 page failed ({reason}: 1); check the network and the site, or set"
    assert result.stderr.strip().splitlines()[-1].startswith(f"crawl failed: {why}")
    assert failed_pages(result.stderr) == {reason: 1}
    assert digest(db_path) == before
    journal = last_run(db_path.with_name("operations.db"))
    expected = ("failed", why, 1)
    journal["message"] = journal["message"][: len(why)]
    assert (journal["status"], journal["message"], journal["errors"]) == expected
    assert not db_path.with_name(".books.db.staging").exists()


# --- Stopped from outside ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "signum",
    [pytest.param(signal.SIGINT, id="ctrl-c"), pytest.param(signal.SIGTERM, id="sigterm")],
)
def test_a_crawl_stopped_by_a_signal_is_cancelled_and_leaves_the_published_file(site, db_path, signum):
    before = digest(db_path)
    site.delay = 0.1
    process = subprocess.Popen(  # SIGINT as at a terminal, even where the test runner ignores it
        crawl_command(site.url, db_path, CONCURRENT_REQUESTS="2", BOOKS_WRITE_BATCH="5"),
        cwd=PROJECT, env=crawl_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),
    )
    deadline = time.monotonic() + 30
    while sum(site.requests.values()) < 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert sum(site.requests.values()) < 49, "the crawl ran to the end before the signal"
    assert f"Received {signum.name}, shutting down gracefully" in stderr  # Scrapy's own stop, once
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1] == f"crawl cancelled: {STOPPED}"
    assert digest(db_path) == before
    assert not db_path.with_name(".books.db.staging").exists()
    journal = last_run(db_path.with_name("operations.db"))
    # An operator who stopped the crawl reads a cancel, not a failure.
    assert (journal["status"], journal["finish_reason"], journal["message"]) == ("cancelled", "shutdown", STOPPED)
    assert journal["finished_at"] and journal["removed"] is None
    assert 0 < journal["books"] < 45  # it stored what it had fetched, then did not publish it


# --- The disk fills up ---------------------------------------------------------------------------

def file_size_limit(size: int):
    """For preexec_fn: writes past `size` bytes fail with EFBIG (Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


def test_disk_full_while_copying_the_published_file_to_staging(site, db_path):
    before = digest(db_path)
    result = crawl(site.url, db_path, preexec_fn=file_size_limit(db_path.stat().st_size // 2))
    assert result.returncode == 1
    reason = f"could not stage {db_path}: disk I/O error"
    assert result.stderr.strip().splitlines()[-1] == f"crawl failed: {reason}"
    assert digest(db_path) == before
    assert not db_path.with_name(".books.db.staging").exists()
    journal = last_run(db_path.with_name("operations.db"))
    assert (journal["status"], journal["message"]) == ("failed", reason)


def test_disk_full_while_writing_books_to_staging(published, tmp_path, db_path):
    before = digest(db_path)
    bigger = [replace(book, description="A much longer description. " * 100) for book in published.books]
    with SiteServer(build_site(tmp_path / "site", bigger)) as server:
        result = crawl(server.url, db_path, preexec_fn=file_size_limit(db_path.stat().st_size + 32 * 1024))
    assert result.returncode == 1
    reason = "45 books could not be written (disk I/O error)"
    assert result.stderr.strip().splitlines()[-1] == f"crawl failed: {reason}"
    assert digest(db_path) == before
    assert not db_path.with_name(".books.db.staging").exists()
    journal = last_run(db_path.with_name("operations.db"))
    assert (journal["status"], journal["message"], journal["books"]) == ("failed", reason, 0)
