"""Live reload: the running server serves each newly published books database without a restart,
without a failed request and without an answer that mixes two publications."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from datasette.app import Datasette
from sqlite_utils import Database
from serving import ServeProcess, alive
from sitebuilder import build_site, sample_books
from support import SiteServer, crawl, publish_generated_site, query, wait_until

from books_scraper import publish, storage

BOOKS = 20
BASE_PRICE = 10.0
SECRET = "reload-test-secret-" + "0" * 20


def get(url: str, timeout: float = 15, **headers: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def get_after(url: str, delay: float, timeout: float = 15) -> tuple[int, bytes]:
    """Connect, and send the request only `delay` seconds later: a slow client, whose connection a
    worker may have accepted just before it is told to stop."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.connect()
        time.sleep(delay)
        conn.request("GET", f"{parts.path}?{parts.query}", headers={"Connection": "close"})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def get_json(url: str, **headers: str):
    status, body = get(url, **headers)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


def publish_version(books_db: Path, version: int) -> None:
    """Publish as a crawl does (lock, staging copy, atomic swap) a version the answers can tell
    apart: BOOKS - version books, every one priced BASE_PRICE + version, and a published run."""
    with publish.crawl_lock(books_db):
        staging = publish.prepare_staging(books_db)
        conn = sqlite3.connect(staging)
        with conn:
            keep = [row[0] for row in conn.execute("select id from books order by id limit ?", (BOOKS - version,))]
            conn.execute(f"delete from books where id not in ({','.join('?' * len(keep))})", keep)
            conn.execute("update books set price = ?", (BASE_PRICE + version,))
            conn.execute(
                "insert into crawl_runs (started_at, finished_at, status, books) values (?, ?, 'published', ?)",
                ("2026-01-01T00:00:00+00:00", f"2026-01-01T00:00:{version:02d}+00:00", len(keep)),
            )
        conn.close()
        shape = Database(staging)  # as the crawl's publication does: indexes, FTS and the aggregates
        storage.ensure_db_shape(shape)
        shape.close()
        publish.replace_atomically(staging, books_db)


def prices_version(count: int, prices: list[float]) -> int:
    """The version a count and the prices of one answer belong to; AssertionError if they disagree."""
    version = BOOKS - count
    assert len(prices) == count and set(prices) == {BASE_PRICE + version}, (count, sorted(set(prices)))
    return version


SQL = ("select count(*) as n, min(price) as low, max(price) as high, "
       "(select max(id) from crawl_runs where status = 'published') as run from books")


def sql_version(body: bytes, first_run: int) -> int:
    [row] = json.loads(body)
    version = BOOKS - row["n"]
    assert row["low"] == row["high"] == BASE_PRICE + version and row["run"] == first_run + version, row
    return version


def table_version(body: bytes, first_run: int) -> int:
    data = json.loads(body)  # the count and the rows are separate queries
    return prices_version(data["filtered_table_rows_count"], [row["price"] for row in data["rows"]])


def csv_version(body: bytes, first_run: int) -> int:
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    return prices_version(len(rows), [float(row["price"]) for row in rows])


def api_version(body: bytes, first_run: int) -> int:
    data = json.loads(body)
    version = BOOKS - data["total_books"]
    assert data["min_price"] == data["max_price"] == BASE_PRICE + version, data
    return version


# Each answer is read whole and told which version it is: the four ways the books are read.
READS = {
    "?sql=": ("books.json?" + urlencode({"sql": SQL, "_shape": "array"}), sql_version),
    "table JSON": ("books/books.json?_size=1000&_shape=objects", table_version),
    "CSV": ("books/books.csv?_stream=on&_size=max", csv_version),
    "API": ("api/v1/stats/overview", api_version),
}


@dataclass
class Stream:
    """Client threads reading without pause, each request a new connection, bounded in count and
    time; the slow ones send each request a moment after connecting."""

    url: str
    first_run: int
    threads: int = 4
    slow_threads: int = 2
    slow_delay: float = 0.2
    max_requests: int = 4000
    answers: Counter = field(default_factory=Counter)  # (read, version) -> answers
    failures: list = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def client(self, number: int) -> None:
        names = list(READS)
        for count in range(self.max_requests):
            if self.stop.is_set():
                return
            name = names[(number + count) % len(names)]
            path, version_of = READS[name]
            try:
                if number < self.slow_threads:
                    status, body = get_after(self.url + path, self.slow_delay)
                else:
                    status, body = get(self.url + path)
                if status != 200:
                    self.failures.append((name, status, body[:200]))
                else:
                    self.answers[name, version_of(body, self.first_run)] += 1
            except AssertionError as mixed:
                self.failures.append((name, "mixed", str(mixed)))
            except Exception as error:  # a refused or reset connection, a timeout
                self.failures.append((name, type(error).__name__, str(error)))

    def __enter__(self) -> "Stream":
        count = self.threads + self.slow_threads
        self.workers = [threading.Thread(target=self.client, args=(n,)) for n in range(count)]
        for thread in self.workers:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.workers:
            thread.join(timeout=30)

    def total(self) -> int:
        return sum(self.answers.values()) + len(self.failures)


def wait_for_version(url: str, version: int, first_run: int, timeout: float = 30) -> float:
    """Seconds until a new request answers `version`, bounded; returns once every read kind does
    (the old worker may still take a connection or two just after the new one is ready)."""
    start, first_seen = time.monotonic(), None
    while time.monotonic() - start < timeout:
        seen = [version_of(get(url + path)[1], first_run) for path, version_of in READS.values()]
        if version in seen and first_seen is None:
            first_seen = time.monotonic() - start
        if set(seen) == {version}:
            return first_seen
        time.sleep(0.05)
    raise AssertionError(f"version {version} not served within {timeout}s")


@pytest.fixture(scope="module")
def crawled(tmp_path_factory) -> tuple[Path, Path]:
    """A small generated site and the database a real crawl of it published."""
    return publish_generated_site(tmp_path_factory.mktemp("reload"), BOOKS)


@pytest.fixture
def data(crawled, tmp_path) -> Path:
    """A private data directory holding the crawled database, published as version 0."""
    directory = tmp_path / "data"
    directory.mkdir()
    books_db = directory / "books.db"
    books_db.write_bytes(crawled[1].read_bytes())
    publish_version(books_db, 0)
    return directory


def first_run_of(books_db: Path) -> int:
    return query(books_db, "select max(id) as id from crawl_runs where status = 'published'")[0]["id"]


def log_of(server: ServeProcess) -> str:
    """The server's whole log so far (its request lines included)."""
    server.output()  # flushes it
    return server.log.read_text(errors="replace")


def one_worker(server: ServeProcess, timeout: float = 15) -> list[int]:
    """The server's workers once the replaced one has finished stopping."""
    deadline = time.monotonic() + timeout
    while len(server.workers()) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(server.workers()) == 1
    return server.workers()


def serve(data: Path, tmp_path: Path, **env: str) -> ServeProcess:
    return ServeProcess(data / "books.db", data / "operations.db", tmp_path / "serve.log", **env)


def test_a_steady_stream_of_requests_sees_three_reloads_and_no_failure(data, tmp_path):
    first_run = first_run_of(data / "books.db")
    actor = Datasette(secret=SECRET).sign({"a": {"id": "tester"}}, "actor")
    with serve(data, tmp_path, DATASETTE_SECRET=SECRET) as server:
        assert wait_for_version(server.url, 0, first_run) < 1
        before = server.workers()
        with Stream(server.url, first_run) as stream:
            time.sleep(1)
            reload_seconds = []
            for version in (1, 2, 3):
                publish_version(data / "books.db", version)
                reload_seconds.append(wait_for_version(server.url, version, first_run))
                time.sleep(1)
        after = one_worker(server)
        # The same signing secret in every worker: a signed-in browser stays signed in.
        assert get_json(server.url + "-/actor.json", Cookie=f"ds_actor={actor}") == {"actor": {"id": "tester"}}
        log = log_of(server)
    print(f"\nreloads took {', '.join(f'{s:.2f}' for s in reload_seconds)} s after publication; "
          f"{stream.total()} requests during them; answers {dict(sorted(stream.answers.items()))}; "
          f"failures {len(stream.failures)}")
    assert stream.failures == []
    assert {version for _, version in stream.answers} == {0, 1, 2, 3}
    assert all(stream.answers[name, version] for name in READS for version in (1, 2))
    assert len(before) == len(after) == 1 and before != after
    assert log.count("reloaded: serving books.db published at") == 3
    assert f"reloaded: serving books.db published at 2026-01-01T00:00:03+00:00, {BOOKS - 3} books" in log


def test_a_crawl_publishes_into_the_running_server_and_a_failed_one_changes_nothing(crawled, tmp_path):
    site, crawled_db = crawled
    data = tmp_path / "data"
    data.mkdir()
    (data / "books.db").write_bytes(crawled_db.read_bytes())
    book = sample_books(BOOKS)[0]
    price_sql = "books.json?" + urlencode({"sql": f"select price from books where id = {book.id}", "_shape": "array"})
    with serve(data, tmp_path) as server:
        old_price = get_json(server.url + price_sql)[0]["price"]
        assert get_json(server.url + f"api/v1/books/{book.id}")["price"] == old_price
        # The site changes one price; an operator's crawl publishes it into the served file.
        changed = [b if b.id != book.id else type(b)(**{**vars(b), "price": "£77.70"}) for b in sample_books(BOOKS)]
        build_site(site, changed)
        with SiteServer(site) as site_server:
            result = crawl(site_server.url, data / "books.db")
        assert result.returncode == 0, result.stderr[-3000:]
        # A new worker starts for it (START_SECONDS at most); the log says why if it does not.
        wait_until(lambda: get_json(server.url + price_sql) == [{"price": 77.7}],
                   why=lambda: f"the published price is {query(data / 'books.db', f'select price from books where id = {book.id}')};"
                               f" the server's log:\n{log_of(server)}")
        # Until the old worker has stopped accepting, a new connection may still reach it (an answer is
        # wholly one version or the other); once it has gone, every answer is the new one.
        one_worker(server)
        assert get_json(server.url + f"api/v1/books/{book.id}")["price"] == 77.7
        assert get_json(server.url + "api/v1/stats/overview")["max_price"] >= 77.7
        assert get(server.url + "-/dashboards/books")[0] == 200
        # A crawl of a dead site fails: the published file and what is served stay as they were.
        workers, published = one_worker(server), (data / "books.db").read_bytes()
        result = crawl("http://127.0.0.1:9/", data / "books.db")
        assert result.returncode == 1 and "crawl failed" in result.stderr
        time.sleep(2.5)  # more than two looks at the file
        assert (data / "books.db").read_bytes() == published
        assert server.workers() == workers
        assert get_json(server.url + price_sql) == [{"price": 77.7}]
        log = log_of(server)
    assert log.count("reloaded:") == 1
    build_site(site, sample_books(BOOKS))  # the module's site as it was


def test_a_publication_that_cannot_be_served_leaves_the_old_one_served(data, tmp_path):
    first_run = first_run_of(data / "books.db")
    good = data / ".good"
    good.write_bytes((data / "books.db").read_bytes())
    with serve(data, tmp_path) as server:
        workers = server.workers()
        broken = data / ".broken"
        broken.write_bytes(b"not a database " * 100)
        publish.replace_atomically(broken, data / "books.db")
        # The worker serving keeps reading its own version, from every connection it opens.
        with Stream(server.url, first_run) as stream:
            deadline = time.monotonic() + 30
            while "not reloaded" not in log_of(server) and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1)
        assert "not reloaded: the worker for the new books.db exited" in log_of(server)
        assert stream.failures == []
        assert {version for _, version in stream.answers} == {0}
        assert server.workers() == workers
        # The next good publication is served.
        publish.replace_atomically(good, data / "books.db")
        publish_version(data / "books.db", 1)
        wait_for_version(server.url, 1, first_run)


def test_a_worker_that_dies_is_replaced(data, tmp_path):
    first_run = first_run_of(data / "books.db")
    with serve(data, tmp_path) as server:
        [worker] = server.workers()
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while server.workers() in ([], [worker]) and time.monotonic() < deadline:
            time.sleep(0.1)
        wait_for_version(server.url, 0, first_run)
        assert len(server.workers()) == 1 and server.workers() != [worker]
        assert f"worker {worker} exited unexpectedly" in log_of(server)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_stopping_the_server_stops_its_workers(sig, data, tmp_path):
    server = serve(data, tmp_path)
    with server:
        workers = server.workers()
        assert workers
        server.process.send_signal(sig)
        server.process.wait(timeout=15)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers)
        if sig != signal.SIGKILL:
            assert server.process.returncode == 0
            assert not list(data.glob(".books.db.served-*"))  # the pinned versions are removed
