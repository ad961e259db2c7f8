"""The service at 1k, 100k and 1M books: every route's latency, size and memory, side by side.

Builds synthetic catalogues of the real schema through the project's own storage code (copies of a
crawled database's rows with new ids and UPCs, or generated rows of realistic lengths; predictions
in proportion in an operations database), caches them outside the repository while the schema's
fingerprint is unchanged, then for each size starts `python -m books_scraper.serve` as the README
does and measures every /api/v1 route, the canned queries of metadata.yml, the dashboards' chart
SQL as Datasette serves it, and Datasette's table, search and CSV pages:

- first request: each route's first request after a fresh start of the server (one start per route;
  a full export, once the new server is idle, to its first byte, then dropped: the CPU the server
  spends in the next second and how long it takes to stop on SIGTERM say whether the stream
  stopped), and start to first answer;
- warm: the median of up to --repeat sequential requests on one keep-alive connection;
- under load: /api/v1/health sampled every 50 ms while the route runs (exports: one full download);
- response size, the server's peak RSS per route, and for the full exports their rows, rows/s and
  RSS growth, next to Datasette's own CSV stream measured in the same run.

Prints a table per size side by side with each route's ratio to the smallest size and whether the
issue's goals are met, and writes every figure as JSON (--out).
Usage: python bench/scale.py [--sizes 1000,100000,1000000] [--seed path/to/books.db|generated]
       [--cache /tmp/books-scale] [--repeat 5] [--out results.json]
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from books_scraper.operations import open_operations_db, save_predictions  # noqa: E402
from books_scraper.storage import (  # noqa: E402
    ensure_db_shape, open_books_db, save_books, save_crawl_run,
)
from books_scraper.web.served_metadata import load_metadata  # noqa: E402
from books_scraper.web.worker import PUBLIC_SETTINGS  # noqa: E402

CACHE = Path("/tmp/books-scale")
DEFAULT_SIZES = (1_000, 100_000, 1_000_000)
# Bump when the rows the builder writes change without the schema changing.
BUILD_VERSION = 1
BATCH = 5_000  # books per save_books call: one transaction each
PREDICTION_BATCH = 10_000  # the API's max_prediction_rows
PRICE_CHANGES = 0.01  # the share of books a second crawl sees at a new price
SITE = "https://books.toscrape.com/"
SQL_TIME_LIMIT_MS = int(PUBLIC_SETTINGS["sql_time_limit_ms"])


# --- The rows: copies of a crawled database, or generated ---------------------------------------

WORDS = (
    "the of and a to in is was for with on his her that as by from at it be this an their they "
    "which one new life love story world time years book novel first who when into she he about "
    "after family war history how most all has were more best home night other death two "
    "secret house city heart girl man woman young great old light dark last day children friends "
    "reader american british london york author series edition journey finds must every mystery "
    "art science guide music power truth dream fire water stars summer winter house garden attic "
    "poetry travel romance fantasy thriller classic modern lost found between through beyond"
).split()


def generated_seed(count: int = 1000, seed: int = 1) -> list[dict]:
    """Book records in the crawler's shape, of the real catalogue's lengths (titles ~40 characters,
    descriptions ~1400), spread over 50 categories."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        category = index % 50 + 2
        title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12))).capitalize()
        description = " ".join(rng.choice(WORDS) for _ in range(rng.randint(60, 420))).capitalize() + "."
        stock = rng.randint(0, 22)
        price = round(rng.uniform(10, 60), 2)
        records.append({
            "title": title, "price": price, "price_incl_tax": price, "tax": 0.0, "currency": "GBP",
            "rating": rng.randint(1, 5), "availability": f"In stock ({stock} available)" if stock else "Out of stock",
            "in_stock": stock > 0, "stock_count": stock, "category": f"Category {category}",
            "category_url": f"{SITE}catalogue/category/books/category-{category}_{category}/index.html",
            "description": description, "product_type": "Books", "number_of_reviews": 0,
            "image_url": f"{SITE}media/cache/{index:032x}.jpg", "scraped_at": "2026-11-26T12:00:00+00:00",
        })
    return records


def crawled_seed(path: Path) -> list[dict]:
    """The books of a crawled database as records in the crawler's shape, on the real site's URLs."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "select b.*, c.name as category, c.url as category_url from books b"
            " join categories c on c.id = b.category_id order by b.id"
        ).fetchall()
    finally:
        conn.close()
    records = []
    for row in rows:
        record = {k: row[k] for k in row.keys() if k not in ("id", "upc", "category_id", "product_url")}
        record["category_url"] = on_site(record["category_url"], "catalogue/")
        record["image_url"] = on_site(record["image_url"] or "", "media/")
        records.append(record)
    if not records:
        raise SystemExit(f"no books in {path}")
    return records


def on_site(url: str, folder: str) -> str:
    """A URL of the crawled copy moved to the real site: '.../catalogue/x' -> SITE + 'catalogue/x'."""
    return SITE + folder + url.split("/" + folder, 1)[-1]


def seed_records(seed: str) -> tuple[list[dict], str]:
    """The rows every catalogue copies, and what they are ("generated" or the crawled file)."""
    if seed == "auto":
        crawled = PROJECT / "data" / "books.db"
        seed = str(crawled) if crawled.exists() else "generated"
    if seed == "generated":
        return generated_seed(), "generated"
    return crawled_seed(Path(seed)), f"copies of {seed}"


def seed_batches(seed: list[dict], size: int) -> Iterator[list[dict]]:
    """The first min(size, len(seed)) books: the seed's rows with ids 1.., new UPCs and product URLs."""
    batch = []
    for book_id, record in enumerate(seed[:size], start=1):
        slug = "-".join(record["title"].lower().split()[:6])
        batch.append({**record, "id": book_id, "upc": f"{book_id:016x}",
                      "product_url": f"{SITE}catalogue/{quote(slug)}_{book_id}/index.html"})
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


# The seed's books copied, set-based, to ids seed+1..size: the same rows with a new id, UPC and
# product URL (the URL's "_<id>/index.html" renumbered), and each copy's first price_history row.
COPY_BOOKS = """
with recursive copies(n) as (select 1 union all select n + 1 from copies where n < :copies)
insert into books ({columns})
select {values}
from books b, copies where b.id <= :seed and b.id + n * :seed <= :size
"""
COPY_HISTORY = """
insert into price_history (book_id, run_id, price, stock_count, observed_at)
select b.id, 1, b.price, b.stock_count, b.scraped_at from books b where b.id > :seed
"""


def copy_books_sql(columns: list[str]) -> str:
    renumbered = {
        "id": "b.id + n * :seed",
        "upc": "printf('%016x', b.id + n * :seed)",
        "product_url": "rtrim(b.product_url, '0123456789/index.html') || (b.id + n * :seed) || '/index.html'",
    }
    values = ", ".join(renumbered.get(column, f"b.{column}") for column in columns)
    return COPY_BOOKS.format(columns=", ".join(columns), values=values)


def build_books_db(path: Path, seed: list[dict], size: int) -> dict:
    """A published books database of `size` books, built the way a crawl builds one: the seed's
    rows through save_books (copied set-based up to `size`), a second crawl run that sees
    PRICE_CHANGES of the books at a new price (save_books again), then ensure_db_shape()."""
    started = time.perf_counter()
    db = open_books_db(str(path))
    db.execute("pragma synchronous = off")  # a scratch file: rebuilt if the machine stops mid-way
    db.execute("pragma journal_mode = memory")
    db.execute("pragma cache_size = -500000")  # 500 MB: FTS merges at 1M books
    for batch in seed_batches(seed, size):
        save_books(db, batch, run_id=1)
    copied = len(seed)
    if size > copied:
        columns = [column.name for column in db["books"].columns]
        params = {"copies": -(-size // copied) - 1, "seed": copied, "size": size}
        with db.conn:
            db.execute(copy_books_sql(columns), params)
            db.execute(COPY_HISTORY, {"seed": copied})
    changed_every = round(1 / PRICE_CHANGES)
    changed_sql = (
        "select b.*, c.name as category, c.url as category_url from books b join categories c"
        " on c.id = b.category_id where b.id % :every = 0 order by b.id"
    )
    changed = [
        {**{k: v for k, v in row.items() if k != "category_id"},
         "price": round(row["price"] + 1, 2), "scraped_at": "2026-11-22T10:00:00+00:00"}
        for row in db.query(changed_sql, {"every": changed_every})
    ]
    for index in range(0, len(changed), BATCH):
        save_books(db, changed[index:index + BATCH], run_id=2)
    for run_id in (1, 2):
        save_crawl_run(db, {"id": run_id, "started_at": f"2026-11-2{run_id}T10:00:00+00:00",
                            "finished_at": f"2026-11-2{run_id}T11:00:00+00:00", "status": "published", "start_url": SITE,
                            "pages": size + 50, "books": size, "dropped": 0, "drops": {}, "errors": 0,
                            "finish_reason": "finished", "removed": 0, "failures": {}})
    rows_seconds = time.perf_counter() - started
    shape_started = time.perf_counter()
    ensure_db_shape(db)
    shape_seconds = time.perf_counter() - shape_started
    db.close()
    return {"rows_s": round(rows_seconds, 2), "shape_s": round(shape_seconds, 2)}


def build_operations_db(path: Path, books_db: Path, size: int) -> dict:
    """One prediction per book (model linear-v1, batches of PREDICTION_BATCH) and a journal entry."""
    started = time.perf_counter()
    db = open_operations_db(str(path))
    db.execute("pragma synchronous = off")
    books = sqlite3.connect(f"file:{books_db}?mode=ro", uri=True)
    try:
        cursor = books.execute("select id, rating from books order by id")
        batch_number = 0
        while rows := cursor.fetchmany(PREDICTION_BATCH):
            batch_number += 1
            predictions = [{"id": book_id, "predicted_rating": rating + ((book_id * 7919) % 21 - 10) / 10}
                           for book_id, rating in rows]
            save_predictions(db, predictions, model="linear-v1", batch_id=f"batch-{batch_number:05d}",
                             actor="bench-scale")
    finally:
        books.close()
    save_crawl_run(db, {"id": 1, "started_at": "2026-11-22T10:00:00+00:00", "finished_at": "2026-11-22T11:00:00+00:00",
                        "status": "published", "start_url": SITE, "books": size})
    db.conn.commit()
    db.close()
    return {"predictions_s": round(time.perf_counter() - started, 2)}


def schema_of(path: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("select type, name, tbl_name, sql from sqlite_master order by type, name").fetchall()
    finally:
        conn.close()


@functools.lru_cache(maxsize=None)
def fresh_schema(seed_json: str) -> str:
    """The schema of both databases of a tiny catalogue built now, as JSON."""
    seed = json.loads(seed_json)
    with tempfile.TemporaryDirectory(prefix="books-scale-fp-") as work:
        books, operations = Path(work) / "books.db", Path(work) / "operations.db"
        build_books_db(books, seed[:3], 3)
        build_operations_db(operations, books, 3)
        return json.dumps([schema_of(books), schema_of(operations)])


def seed_digest(seed: list[dict]) -> str:
    return hashlib.sha256(json.dumps([BUILD_VERSION, seed], sort_keys=True, default=str).encode()).hexdigest()[:12]


def fingerprint(seed: list[dict]) -> str:
    """The schema a tiny catalogue built now has (both databases), the builder's version and the
    seed rows: a cached catalogue is reused while these are unchanged."""
    schema = fresh_schema(json.dumps(seed, sort_keys=True, default=str))
    return hashlib.sha256(f"{schema}{seed_digest(seed)}".encode()).hexdigest()[:12]


@dataclass
class Catalogue:
    size: int
    books_db: Path
    operations_db: Path
    build: dict  # how long it took, file sizes, cached or not


def catalogue(size: int, seed: list[dict], seed_name: str, cache: Path, print_fn=print,
              rebuild: bool = False) -> Catalogue:
    """The cached catalogue of `size` books for today's schema: built when missing, or upgraded
    from the copy an earlier schema left (the same seed): its migrations and ensure_db_shape() run
    on it, as on a database published by an older version, and it is kept only if its schema is
    then exactly a new build's."""
    key = fingerprint(seed)
    directory = cache / f"{size}-{key}"
    books, operations, facts = directory / "books.db", directory / "operations.db", directory / "build.json"
    if rebuild and directory.exists():
        shutil.rmtree(directory)
    if facts.exists():
        build = json.loads(facts.read_text())
        return Catalogue(size, books, operations, {**build, "cached": True})
    stale = [path for path in cache.glob(f"{size}-*") if path.is_dir() and path != directory]
    partial = cache / f".{size}-{key}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    build = None if rebuild else upgrade(stale, partial, seed, print_fn)
    if build is None:
        shutil.rmtree(partial)
        partial.mkdir()
        print_fn(f"building {size} books ({seed_name}) in {directory} ...")
        started = time.perf_counter()
        build = build_books_db(partial / "books.db", seed, size)
        build.update(build_operations_db(partial / "operations.db", partial / "books.db", size))
        build["total_s"] = round(time.perf_counter() - started, 2)
        build["books_per_s"] = round(size / build["total_s"])
    build["books_mb"] = round((partial / "books.db").stat().st_size / 1e6, 1)
    build["operations_mb"] = round((partial / "operations.db").stat().st_size / 1e6, 1)
    build.update(fingerprint=key, seed=seed_name, seed_digest=seed_digest(seed))
    (partial / "build.json").write_text(json.dumps(build, indent=2))
    partial.rename(directory)
    for path in stale:  # another schema's copy of this size: gigabytes at 1M
        remove_unless_in_use(path)
    print_fn(f"{size} books ready in {build.get('upgrade_s', build['total_s'])} s: {json.dumps(build)}")
    return Catalogue(size, books, operations, {**build, "cached": False})


@contextmanager
def in_use(directory: Path) -> Iterator[None]:
    """A shared lock on a catalogue while a run measures it: no other run removes it meanwhile."""
    with open(directory / ".in-use", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        yield


def remove_unless_in_use(directory: Path) -> None:
    try:
        with open(directory / ".in-use", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(directory, ignore_errors=True)
    except BlockingIOError:
        pass  # another run serves it now; a later run removes it
    except FileNotFoundError:
        pass  # removed meanwhile


def upgrade(stale: list[Path], partial: Path, seed: list[dict], print_fn) -> dict | None:
    """The newest stale copy of the same seed, upgraded in `partial`; None when there is none or
    its upgraded schema differs from a new build's."""
    candidates = []
    for path in stale:
        try:
            build = json.loads((path / "build.json").read_text())
        except (OSError, ValueError):
            continue
        if build.get("seed_digest") == seed_digest(seed):
            candidates.append((path.stat().st_mtime, path, build))
    if not candidates:
        return None
    _, source, build = max(candidates)
    print_fn(f"upgrading {source} to today's schema ...")
    started = time.perf_counter()
    shutil.copyfile(source / "books.db", partial / "books.db")
    shutil.copyfile(source / "operations.db", partial / "operations.db")
    db = open_books_db(str(partial / "books.db"))
    db.execute("pragma synchronous = off")
    db.execute("pragma cache_size = -500000")
    ensure_db_shape(db)
    db.close()
    open_operations_db(str(partial / "operations.db")).close()
    schema = json.dumps([schema_of(partial / "books.db"), schema_of(partial / "operations.db")])
    if schema != fresh_schema(json.dumps(seed, sort_keys=True, default=str)):
        print_fn("the upgraded copy's schema differs from a new build's: building afresh")
        return None
    upgraded = {key: build[key] for key in ("rows_s", "shape_s", "predictions_s", "total_s", "books_per_s")}
    return {**upgraded, "upgraded_from": source.name, "upgrade_s": round(time.perf_counter() - started, 2)}


# --- The server, as the README starts it --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """The processes under `pid` (the supervisor's workers), from /proc."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                children = [int(child) for child in task.read_text().split()]
            except OSError:
                continue  # gone meanwhile
            found += children
            queue += children
    return found


def memory_mb(pid: int, key: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Memory(threading.Thread):
    """The resident memory of a server's process tree, sampled every 50 ms; peaks per window."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.current, self.peak, self.window_peak = pid, 0.0, 0.0, 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        pids, tick = [self.pid], 0
        while not self.stopped.wait(0.05):
            if tick % 20 == 0:
                pids = [self.pid, *descendants(self.pid)]
            tick += 1
            self.current = sum(memory_mb(pid) for pid in pids)
            self.peak = max(self.peak, self.current)
            self.window_peak = max(self.window_peak, self.current)

    def window(self) -> float:
        """Start a new window: its peak is read from window_peak; returns the memory now."""
        time.sleep(0.1)  # two samples after the last request's end
        self.window_peak = self.current
        return self.current


RUNNING: dict[int, subprocess.Popen] = {}


def stop_all() -> None:
    for process in list(RUNNING.values()):
        stop_process(process)


def stop_process(process: subprocess.Popen) -> float:
    """SIGTERM, as an operator stops it; its whole process group killed after 20 s or at the end.
    Returns the seconds it took to exit on SIGTERM (20: it did not)."""
    started = time.perf_counter()
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    seconds = time.perf_counter() - started
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group started for it: workers left behind too
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=10)
    RUNNING.pop(process.pid, None)
    return seconds


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of these processes, from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def wait_idle(pids: list[int], limit: float = 20) -> None:
    """Until these processes use under 5% of a CPU over half a second (at most `limit` seconds)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = cpu_seconds(pids)
        time.sleep(0.5)
        if cpu_seconds(pids) - before < 0.025:
            return


class Server:
    """`python -m books_scraper.serve --books-db ... --operations-db ...` with BOOKS_HOST/BOOKS_PORT."""

    def __init__(self, cat: Catalogue, work: Path, token: str) -> None:
        self.cat, self.work, self.port = cat, work, free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
        env.update(BOOKS_HOST="127.0.0.1", BOOKS_PORT=str(self.port), BOOKS_API_TOKEN_ADMIN=token)
        self.env = env
        self.command = [sys.executable, "-m", "books_scraper.serve", "--books-db", str(cat.books_db),
                        "--operations-db", str(work / "operations.db")]

    def __enter__(self, attempts: int = 3) -> "Server":
        for attempt in range(1, attempts + 1):
            self.log = open(self.work / "serve.log", "ab")
            started = time.perf_counter()
            self.process = subprocess.Popen(self.command, cwd=PROJECT, env=self.env, stdout=self.log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
            RUNNING[self.process.pid] = self.process
            try:
                self.start_s = self.first_answer(started)
                break
            except RuntimeError:
                self.__exit__()
                # Another program on this shared machine may take the free port first: try another.
                if attempt == attempts or "already in use" not in self.log_tail():
                    raise
                self.port = free_port()
                self.env["BOOKS_PORT"] = str(self.port)
            except BaseException:
                self.__exit__()
                raise
        self.memory = Memory(self.process.pid)
        self.memory.start()
        return self

    def log_tail(self) -> str:
        return (self.work / "serve.log").read_text(errors="replace")[-3000:]

    def first_answer(self, started: float, limit: float = 120) -> float:
        """Seconds from the start to the first answer of Datasette's trivial /-/versions.json."""
        while time.perf_counter() - started < limit:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}")
            answer = fetch(self.connection(), "/-/versions.json", timeout=limit)
            if answer.status == 200:
                return time.perf_counter() - started
            time.sleep(0.02)
        raise RuntimeError(f"serve did not answer within {limit} s")

    def connection(self, timeout: float = 300) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def peak_mb(self) -> float:
        """The highest resident memory of any one of the server's processes since it started."""
        return max(memory_mb(pid, "VmHWM") for pid in [self.process.pid, *descendants(self.process.pid)])

    def __exit__(self, *exc: object) -> None:
        if getattr(self, "memory", None):
            self.memory.stopped.set()
        self.stop_s = stop_process(self.process)
        self.log.close()


# --- Requests -----------------------------------------------------------------------------------

HEAD = 8 << 20


@dataclass
class Answer:
    status: int  # 0: no answer (refused, reset, timed out)
    seconds: float
    size: int = 0
    lines: int = 0  # newlines in the body: CSV and NDJSON rows
    ids: int = 0  # '"id"' in the body: JSON rows
    head: bytes = b""  # the body's first HEAD bytes
    error: str = ""


def fetch(conn: http.client.HTTPConnection, path: str, headers: dict | None = None,
          timeout: float = 300, first_byte: bool = False) -> Answer:
    """GET path, reading the whole body in 1 MB chunks (counting, keeping only the first HEAD
    bytes); never longer than `timeout` seconds. first_byte: only until the body's first byte,
    then the connection is dropped, as a client that gives up does."""
    started = time.perf_counter()
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        if first_byte:
            head = response.read(1)
            seconds = time.perf_counter() - started
            conn.close()
            return Answer(response.status, seconds, len(head), head=head)
        size = lines = ids = 0
        head = tail = b""
        while chunk := response.read(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
            ids += (tail + chunk).count(b'"id"')  # the last 3 bytes before: a key cut by the chunking
            tail = chunk[-3:]
            if len(head) < HEAD:
                head += chunk[: HEAD - len(head)]
            if time.perf_counter() - started > timeout:
                conn.close()
                return Answer(0, time.perf_counter() - started, size, lines, ids, head, f"over {timeout} s")
        return Answer(response.status, time.perf_counter() - started, size, lines, ids, head)
    except (OSError, http.client.HTTPException) as error:
        conn.close()
        return Answer(0, time.perf_counter() - started, error=f"{type(error).__name__}: {error}")


# --- What is measured ---------------------------------------------------------------------------

@dataclass
class Route:
    name: str
    path: str
    group: str  # api, export, canned, chart, table (Datasette's /books/books), datasette
    ok: tuple[int, ...] = (200,)
    rows: int | None = None  # the rows a complete export has (None: not checked)
    count: str = "lines"  # how an export's rows are counted: lines (less a header), ndjson, ids
    auth: bool = False  # sent with the admin token


def catalogue_facts(cat: Catalogue) -> dict:
    conn = sqlite3.connect(f"file:{cat.books_db}?mode=ro", uri=True)
    try:
        books = conn.execute("select max(id) from books").fetchone()[0]
        slug, name = conn.execute(
            "select slug, name from categories where id = (select category_id from books where id = 1)").fetchone()
    finally:
        conn.close()
    return {"books": books, "category_slug": slug, "category_name": name}


def charts(metadata: dict) -> Iterator[tuple[str, str, str, str]]:
    """(name, database, SQL, template) of every dashboard chart: the SQL with its filters left out, as
    datasette-dashboards renders the query it sends (`[[ ... ]]` blocks dropped when unset)."""
    from datasette_dashboards import replace_opts_in_query

    dashboards = metadata.get("plugins", {}).get("datasette-dashboards", {})
    for dashboard, spec in dashboards.items():
        for chart, definition in spec.get("charts", {}).items():
            if definition.get("query"):
                yield f"{dashboard}/{chart}", definition["db"], replace_opts_in_query(definition["query"], {}), \
                    definition["query"]


def routes(facts: dict, metadata: dict, next_path: str) -> list[Route]:
    """Every route measured, with the catalogue's own ids and names."""
    from datasette_dashboards import replace_opts_in_query

    n, slug, name = facts["books"], facts["category_slug"], facts["category_name"]
    api = [
        ("health", "/api/v1/health"),
        ("ready", "/api/v1/ready"),
        ("books page", "/api/v1/books?limit=20"),
        ("books via next links", next_path),
        ("books q search", "/api/v1/books?q=love&limit=20"),
        ("books filtered, sorted", f"/api/v1/books?category={slug}&min_rating=3&sort=-price&limit=20"),
        ("books title search", "/api/v1/books/search?title=attic"),  # 1 book a page at 1k, 50 at 1M
        ("books title search, a full page", "/api/v1/books/search?title=the"),  # 50 a page at both
        ("one book", f"/api/v1/books/{n}"),
        ("top rated", "/api/v1/books/top-rated"),
        ("price range", "/api/v1/books/price-range?min=10&max=20"),
        ("categories", "/api/v1/categories"),
        ("stats overview", "/api/v1/stats/overview"),
        ("stats categories", "/api/v1/stats/categories"),
        ("ml features page", "/api/v1/ml/features?limit=100"),
        ("training-data JSON page", "/api/v1/ml/training-data"),
        ("training-data JSON test page", "/api/v1/ml/training-data?split=test"),
        ("predictions page", "/api/v1/ml/predictions?limit=100"),
        ("predictions summary", "/api/v1/ml/predictions/summary"),
        ("openapi.json", "/api/v1/openapi.json"),
    ]
    measured = [Route(label, path, "api") for label, path in api]
    measured.insert(3, Route("books deep offset", f"/api/v1/books?limit=20&offset={max(0, n - 100)}", "api",
                             ok=(200, 400)))  # 400: an API may bound OFFSET, saying so
    measured.append(Route("scraping jobs (admin)", "/api/v1/scraping/jobs", "api", auth=True))
    measured += [
        Route("features all JSON", "/api/v1/ml/features", "export", rows=n, count="ids"),
        Route("features all CSV", "/api/v1/ml/features?format=csv", "export", rows=n),
        Route("training-data CSV", "/api/v1/ml/training-data?format=csv", "export", rows=n),
        Route("training-data NDJSON", "/api/v1/ml/training-data?format=ndjson", "export", rows=n, count="ndjson"),
        Route("training-data NDJSON test", "/api/v1/ml/training-data?format=ndjson&split=test", "export",
              count="ndjson"),
        Route("Datasette CSV stream", "/books/books.csv?_stream=on", "export", rows=n),
    ]
    for query, spec in metadata["databases"]["books"].get("queries", {}).items():
        params = urlencode({param: "" for param in spec.get("params", [])})
        measured.append(Route(f"canned {query}", f"/books/{query}.json" + (f"?{params}" if params else ""), "canned"))
    for chart, db, sql, template in charts(metadata):
        measured.append(Route(f"chart {chart}", f"/{db}.json?" + urlencode({"sql": sql, "_shape": "objects"}), "chart"))
        if ":category" in template:
            filtered = replace_opts_in_query(template, {"category": name})
            measured.append(Route(f"chart {chart} (one category)", f"/{db}.json?" + urlencode(
                {"sql": filtered, "category": name, "_shape": "objects"}), "chart"))
    measured += [
        Route("table HTML /books/books", "/books/books", "table"),
        Route("table JSON", "/books/books.json?_size=20", "table"),
        Route("search page", "/books/books?_search=love", "table"),
        Route("search JSON", "/books/books.json?_search=love", "table"),
        Route("index /", "/", "datasette"),
        Route("database page /books", "/books", "datasette"),
        Route("row page", f"/books/books/{n}", "datasette"),
        Route("dashboard page", "/-/dashboards/books", "datasette"),
        Route("trivial /-/versions.json", "/-/versions.json", "datasette"),
    ]
    return measured


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def deep_next_path(server: Server, books: int, hops: int = 10) -> tuple[str, bool]:
    """A page of 20 books reached by following `next` links (up to `hops` pages of 1000, or of 20
    below 20,000 books), and whether they carry a cursor (a parameter other than limit and offset)."""
    limit = 1000 if books >= 20_000 else 20
    path, conn = f"/api/v1/books?limit={limit}", server.connection()
    cursor = False
    for _ in range(hops):
        answer = fetch(conn, path)
        if answer.status != 200:
            break
        following = json.loads(answer.head).get("next")
        if not following:
            break
        path = path_of(following)
        cursor = bool(set(dict(parse_qsl(urlsplit(path).query))) - {"limit", "offset"})
    query = {**dict(parse_qsl(urlsplit(path).query)), "limit": "20"}  # the same page size at every size
    smaller = urlsplit(path).path + "?" + urlencode(query)
    if fetch(conn, smaller).status == 200:
        path = smaller
    conn.close()
    return path, cursor


def rows_of(route: Route, answer: Answer) -> int:
    if route.count == "ids":
        return answer.ids
    if route.count == "ndjson":
        return answer.lines
    return max(0, answer.lines - 1)  # the CSV header


@dataclass
class Settings:
    repeat: int = 5  # warm requests per route (after one warm-up)
    route_seconds: float = 20  # warm requests stop once a route has taken this long
    load_seconds: float = 2  # a route repeated this long while /api/v1/health is sampled
    export_timeout: float = 600  # the longest one request may take
    first: str = "restart"  # restart: a fresh server per route; shared: one fresh server for all


def headers_for(route: Route, token: str) -> dict:
    return {"Authorization": f"Bearer {token}"} if route.auth else {}


def measure_warm(server: Server, route: Route, settings: Settings, token: str) -> dict:
    """Warm latency (median of sequential requests on one connection), then /api/v1/health sampled
    every 50 ms while the route runs, and the server's memory over both."""
    headers = headers_for(route, token)
    conn = server.connection(settings.export_timeout)
    baseline = server.memory.window()
    samples: list[Answer] = []
    if route.group != "export":  # a full export is downloaded once, under load below
        fetch(conn, route.path, headers, settings.export_timeout)  # warm-up
        started = time.perf_counter()
        while len(samples) < settings.repeat and (not samples or time.perf_counter() - started < settings.route_seconds):
            samples.append(fetch(conn, route.path, headers, settings.export_timeout))
    loaded: list[Answer] = []
    health: list[float] = []

    def run() -> None:
        load_conn = server.connection(settings.export_timeout)
        deadline = time.perf_counter() + settings.load_seconds
        while not loaded or (route.group != "export" and time.perf_counter() < deadline and len(loaded) < 200):
            loaded.append(fetch(load_conn, route.path, headers, settings.export_timeout))
        load_conn.close()

    runner = threading.Thread(target=run)
    health_conn = server.connection(30)
    runner.start()
    while runner.is_alive():
        sample = fetch(health_conn, "/api/v1/health", timeout=30)
        health.append(sample.seconds)
        runner.join(0.05)
    conn.close()
    health_conn.close()
    result = {
        "warm_ms": ms(statistics.median(a.seconds for a in samples)) if samples else ms(loaded[0].seconds),
        "samples": len(samples) or 1,
        "max_ms": ms(max(a.seconds for a in samples + loaded)),
        "statuses": sorted({a.status for a in samples + loaded}),
        "bytes": (samples or loaded)[-1].size,
        "rss_peak_mb": round(server.memory.window_peak, 1),
        "rss_growth_mb": round(server.memory.window_peak - baseline, 1),
        "health_p50_ms": ms(statistics.median(health)) if health else None,
        "health_max_ms": ms(max(health)) if health else None,
        "health_samples": len(health),
    }
    errors = [a.error for a in samples + loaded if a.error]
    if errors:
        result["error"] = errors[0]
    if route.group == "export":
        export = loaded[0]
        result["rows"] = rows_of(route, export)
        result["rows_per_s"] = round(result["rows"] / export.seconds) if export.seconds else None
        result["complete"] = None if route.rows is None else (export.status == 200 and result["rows"] == route.rows)
    return result


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def first_request(server: Server, route: Route, settings: Settings, token: str) -> dict:
    """The route's first request; a full export only to its first byte (it is downloaded whole,
    under load, on the warm server)."""
    answer = fetch(server.connection(settings.export_timeout), route.path, headers_for(route, token),
                   settings.export_timeout, first_byte=route.group == "export")
    figures = {"first_ms": ms(answer.seconds), "first_status": answer.status, "first_rss_mb": round(server.peak_mb(), 1)}
    if answer.error:
        figures["first_error"] = answer.error
    return figures


def measure_size(cat: Catalogue, metadata: dict, settings: Settings, token: str, progress) -> dict:
    """Every route on one catalogue. On one server: in `shared` mode first each route's first
    request, then each route warm and under load. In `restart` mode, then each route's first request
    after a fresh start of its own."""
    work = Path(tempfile.mkdtemp(prefix=f"books-scale-{cat.size}-"))
    measured_commit = commit()
    try:
        shutil.copyfile(cat.operations_db, work / "operations.db")  # the server may write to it
        facts = catalogue_facts(cat)
        starts, peaks = [], []
        results: dict[str, dict] = {}
        with Server(cat, work, token) as server:
            starts.append(server.start_s)
            idle = server.memory.window()
            next_path, cursor = deep_next_path(server, facts["books"])
            measured = routes(facts, metadata, next_path)
            first = {}
            if settings.first == "shared":  # the next links were followed already: "books" is warm
                first = {route.name: first_request(server, route, settings, token) for route in measured}
            for index, route in enumerate(measured, 1):
                results[route.name] = {"path": route.path, "group": route.group, "ok": list(route.ok),
                                       "expected_rows": route.rows, **measure_warm(server, route, settings, token)}
                progress(f"  warm {index}/{len(measured)} {route.name}: {results[route.name]['warm_ms']} ms")
            results["books via next links"]["cursor"] = cursor
            peaks += [server.memory.peak, server.peak_mb()]
        if settings.first == "restart":
            for index, route in enumerate(measured, 1):
                with Server(cat, work, token) as server:
                    starts.append(server.start_s)
                    if route.group == "export":  # what starts with the server is done before the drop is timed
                        wait_idle(descendants(server.process.pid))
                    first[route.name] = first_request(server, route, settings, token)
                    peaks.append(server.peak_mb())
                    if route.group == "export":  # the download was dropped: does the stream stop?
                        workers = descendants(server.process.pid)
                        before = cpu_seconds(workers)
                        time.sleep(1)
                        first[route.name]["cpu_after_drop"] = round(cpu_seconds(workers) - before, 2)
                if route.group == "export":
                    first[route.name]["stop_after_drop_s"] = round(server.stop_s, 2)
                progress(f"  first {index}/{len(measured)} {route.name}: {first[route.name]['first_ms']} ms")
        for name, figures in first.items():
            results[name].update(figures)
        return {
            "books": facts["books"],
            "build": cat.build,
            "start_s": {"median": round(statistics.median(starts), 2), "max": round(max(starts), 2),
                        "starts": len(starts)},
            "commit": measured_commit,  # other work may land while a long run goes on
            "load_average": [round(load, 1) for load in os.getloadavg()],  # the machine's, as the size ends
            "idle_rss_mb": round(idle, 1),
            "peak_rss_mb": round(max(peaks), 1),
            "routes": results,
        }
    except BaseException:
        log = work / "serve.log"
        if log.exists():
            progress(f"the server's log, last lines:\n{log.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- Goals (issue 12) and the report ------------------------------------------------------------

def route_ok(figures: dict) -> bool:
    statuses = set(figures["statuses"]) | {figures.get("first_status", figures["statuses"][0])}
    return statuses <= set(figures["ok"])


def route_goal(name: str, figures: dict, base: dict | None, size: dict) -> tuple[str, bool | None]:
    """The issue's goal for this route at this size, and whether it is met (None: no goal)."""
    group, answered = figures["group"], route_ok(figures)
    first = figures.get("first_ms", 0.0)
    slowest = max(figures["max_ms"], first)
    if group == "api":
        if base is None:
            return "2xx", answered
        limit = 2 * base["warm_ms"]
        met = answered and figures["warm_ms"] <= limit and first <= 250 and slowest <= SQL_TIME_LIMIT_MS
        return f"warm ≤ {limit:g} (2× smallest), first ≤ 250, all ≤ {SQL_TIME_LIMIT_MS}", met
    if group in ("canned", "chart", "table"):
        return "200, warm and first ≤ 500", answered and max(figures["warm_ms"], first) <= 500
    if group == "export":
        datasette = size["routes"]["Datasette CSV stream"].get("rows_per_s") or 0
        met = (answered and figures.get("complete") is not False
               and (figures.get("rows_per_s") or 0) >= (datasette if name != "Datasette CSV stream" else 0)
               and figures["rss_growth_mb"] < 100 and (figures["health_max_ms"] or 0) < 100)
        return "complete, rows/s ≥ Datasette CSV, RSS +< 100 MB, health < 100", met
    return "2xx", answered


def measured(figures: dict) -> str:
    statuses = sorted(set(figures["statuses"]) | {figures.get("first_status", 200)})
    text = f"warm {figures['warm_ms']:g}, first {figures.get('first_ms', 0):g}, slowest {figures['max_ms']:g} ms"
    if figures["group"] == "export":
        text = (f"{figures.get('rows_per_s')} rows/s, {figures.get('rows')} rows, RSS +{figures['rss_growth_mb']} MB, "
                f"health max {figures['health_max_ms']} ms")
    return text + ("" if statuses == [200] else f", statuses {statuses}")


def evaluate(results: dict) -> list[dict]:
    """Every goal at every size beside the smallest size of the run."""
    sizes = sorted(results["sizes"], key=int)
    base = results["sizes"][sizes[0]]
    goals = []
    for key in sizes:
        size = results["sizes"][key]
        is_base = key == sizes[0]
        for name, figures in size["routes"].items():
            goal, met = route_goal(name, figures, None if is_base else base["routes"].get(name), size)
            figures["goal"], figures["met"] = goal, met
            goals.append({"size": int(key), "route": name, "goal": goal, "met": met, "measured": measured(figures)})
        goals.append({"size": int(key), "route": "server start to first answer", "goal": "≤ 2 s (median of the starts)",
                      "met": size["start_s"]["median"] <= 2, "measured": f"median {size['start_s']['median']} s"})
    return goals


def label(size: int) -> str:
    return f"{size // 1_000_000}M" if size >= 1_000_000 and size % 1_000_000 == 0 else (
        f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size))


def report_lines(results: dict) -> list[str]:
    """Markdown tables: routes by size (warm p50 / first request, ms), exports, the server."""
    sizes = sorted(results["sizes"], key=int)
    data = [results["sizes"][key] for key in sizes]
    names, last = [label(int(key)) for key in sizes], data[-1]
    lines = [f"Sizes {', '.join(names)}; commit {results['commit']}; {results['cpus']} CPUs; "
             f"warm = median of up to {results['settings']['repeat']} sequential requests; first = first request "
             f"after a fresh start ({results['settings']['first']}); ms", ""]
    lines.append("| route | " + " | ".join(f"{n} warm / first" for n in names)
                 + f" | {names[-1]}/{names[0]} warm | {names[-1]} size | {names[-1]} health max | goal at {names[-1]} | met |")
    lines.append("|---" * (len(names) + 6) + "|")
    for name, figures in last["routes"].items():
        if figures["group"] == "export":
            continue  # in the exports' table
        cells = []
        for size in data:
            f = size["routes"].get(name)
            if f is None:
                cells.append("—")
                continue
            statuses = sorted(set(f["statuses"]) | {f.get("first_status", 200)})
            bad = "" if statuses == [200] else f" ({','.join(map(str, statuses))})"
            cells.append(f"{f['warm_ms']:g} / {f.get('first_ms', float('nan')):g}{bad}")
        base = data[0]["routes"].get(name)
        ratio = f"{figures['warm_ms'] / base['warm_ms']:.1f}×" if base and base["warm_ms"] else "—"
        met = {True: "yes", False: "**no**", None: ""}[figures.get("met")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {kb(figures['bytes'])} | "
                     f"{figures['health_max_ms']} | {figures.get('goal', '')} | {met} |")
    lines += ["", f"Exports at {names[-1]}: downloaded whole once on the warm server; first byte after a fresh "
              "start (once idle), then the download dropped: the server's CPU seconds in the next second and its "
              "stop on SIGTERM.",
              "", "| export | " + " | ".join(f"{n} rows/s" for n in names) + " | rows | complete | "
              "RSS growth MB | health p50 / max ms | first byte ms | CPU s after drop / stop s | met |",
              "|---" * (len(names) + 8) + "|"]
    for name, figures in last["routes"].items():
        if figures["group"] != "export":
            continue
        rates = " | ".join(str(size["routes"][name].get("rows_per_s")) for size in data)
        complete = {True: "yes", False: "**no**", None: "—"}[figures.get("complete")]
        met = {True: "yes", False: "**no**", None: ""}[figures.get("met")]
        lines.append(f"| {name} | {rates} | {figures.get('rows')} | {complete} | {figures['rss_growth_mb']} | "
                     f"{figures['health_p50_ms']} / {figures['health_max_ms']} | {figures.get('first_ms')} | "
                     f"{figures.get('cpu_after_drop', '—')} / {figures.get('stop_after_drop_s', '—')} | {met} |")
    lines += ["", "| server | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    rows = [
        ("commit measured", lambda s: s.get("commit", "")),
        ("start to first answer, s (median / slowest)", lambda s: f"{s['start_s']['median']} / {s['start_s']['max']}"),
        ("machine load average (1, 5, 15 min) as the size ended", lambda s: " / ".join(map(str, s.get("load_average", [])))),
        ("idle RSS, MB", lambda s: s["idle_rss_mb"]),
        ("peak RSS, MB", lambda s: s["peak_rss_mb"]),
        ("build, s", build_cell),
        ("books.db, MB", lambda s: s["build"]["books_mb"]),
    ]
    for title, cell in rows:
        lines.append(f"| {title} | " + " | ".join(str(cell(size)) for size in data) + " |")
    missed = [g for g in results["goals"] if g["met"] is False]
    lines += ["", f"Goals missed: {len(missed)} of {sum(g['met'] is not None for g in results['goals'])}"]
    lines += [f"- {label(g['size'])} {g['route']}: {g['measured']} (goal: {g['goal']})" for g in missed]
    return lines


def build_cell(size: dict) -> str:
    build = size["build"]
    text = str(build["total_s"])
    if "upgrade_s" in build:
        text += f" (then upgraded to this schema in {build['upgrade_s']})"
    return text + (" (cached)" if build["cached"] else "")


def kb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", "HEAD") + (" (with uncommitted changes)" if dirty else "")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="books per catalogue, comma-separated")
    parser.add_argument("--seed", default="auto", help="a crawled books.db whose rows are copied, or 'generated'; "
                        "auto: data/books.db when it exists, else generated")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where built catalogues are kept")
    parser.add_argument("--rebuild", action="store_true", help="build the catalogues again even if cached")
    parser.add_argument("--repeat", type=int, default=Settings.repeat, help="warm requests per route")
    parser.add_argument("--route-seconds", type=float, default=Settings.route_seconds,
                        help="warm requests of one route stop after this long")
    parser.add_argument("--load-seconds", type=float, default=Settings.load_seconds,
                        help="how long a route runs while /api/v1/health is sampled")
    parser.add_argument("--export-timeout", type=float, default=Settings.export_timeout,
                        help="the longest one request may take")
    parser.add_argument("--first", choices=("restart", "shared"), default=Settings.first,
                        help="first requests: a fresh server per route, or one fresh server for all")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(size) for size in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not a comma-separated list of numbers")
    if min(args.sizes) < 1:
        parser.error("--sizes: every size must be at least 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every server stopped below

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    settings = Settings(args.repeat, args.route_seconds, args.load_seconds, args.export_timeout, args.first)
    seed, seed_name = seed_records(args.seed)
    metadata = load_metadata()
    token = os.urandom(24).hex()
    results = {"commit": commit(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "cpus": os.cpu_count(), "python": sys.version.split()[0], "seed": seed_name,
               "settings": vars(settings), "sizes": {}}
    try:
        for size in args.sizes:
            cat = catalogue(size, seed, seed_name, args.cache, progress, args.rebuild)
            progress(f"measuring {size} books")
            with in_use(cat.books_db.parent):
                results["sizes"][str(size)] = measure_size(cat, metadata, settings, token, progress)
            if args.out:  # what is measured so far, should a later size fail
                args.out.write_text(json.dumps(results, indent=2))
    finally:
        stop_all()
    results["goals"] = evaluate(results)
    print("\n".join(report_lines(results)))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
