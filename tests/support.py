"""Test support: a local HTTP server with fault injection, and the real `scrapy crawl books`."""

from __future__ import annotations

import os
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FIXTURE_SITE = PROJECT.parent / "shared" / "fixtures" / "books.toscrape.com"
NO_FIXTURE_SITE = f"the real site's copy is absent ({FIXTURE_SITE})"

# The crawl as tests run it: politeness off for a server on 127.0.0.1.
FAST = {"AUTOTHROTTLE_ENABLED": "0", "CONCURRENT_REQUESTS": "16", "DOWNLOAD_DELAY": "0"}


# A fault answers one request in place of the file: an HTTP status (int) or one of the functions
# below, which write to (or drop) the handler's connection themselves.
Fault = int | Callable[["FaultyHandler"], None]


class FaultyHandler(SimpleHTTPRequestHandler):
    """Serves files, answering the next pending fault of a path first."""

    site: "SiteServer"

    def handle(self) -> None:
        try:
            super().handle()
        except ConnectionError:
            pass  # the crawler gave up on a slow answer, or a fault closed the connection

    def do_GET(self) -> None:
        self.site.requests[self.path] += 1
        self.site.arrivals.setdefault(self.path, []).append(time.monotonic())
        time.sleep(self.site.delay)
        pending = self.site.faults.get(self.path)
        if not pending:
            super().do_GET()
        elif isinstance(pending[0], int):
            self.send_error(pending.pop(0))
        else:
            pending.pop(0)(self)

    def page(self) -> bytes:
        return Path(self.translate_path(self.path)).read_bytes()

    def answer(self, body: bytes, content_type: str = "text/html", length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def unavailable(retry_after: int = 1) -> Fault:
    """503 Service Unavailable with a Retry-After header."""

    def fault(handler: FaultyHandler) -> None:
        handler.send_response(503)
        handler.send_header("Retry-After", str(retry_after))
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return fault


def reset(handler: FaultyHandler) -> None:
    """Close the connection without answering, with a TCP reset (SO_LINGER 0)."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


def slow_body(seconds: float = 3.0) -> Fault:
    """Headers and half the page at once, the rest after `seconds` (longer than the crawl waits)."""

    def fault(handler: FaultyHandler) -> None:
        body = handler.page()
        handler.answer(body[: len(body) // 2], length=len(body))
        handler.wfile.flush()
        if not handler.site.stopped.wait(seconds):
            try:
                handler.wfile.write(body[len(body) // 2 :])
            except OSError:
                pass  # the crawler gave up and closed the connection
        handler.close_connection = True

    return fault


def truncated(before: bytes) -> Fault:
    """The page cut just before `before`, sent as if whole (its Content-Length matches)."""

    def fault(handler: FaultyHandler) -> None:
        body = handler.page()
        handler.answer(body[: body.index(before)])

    return fault


def short_body(handler: FaultyHandler) -> None:
    """Announce the whole page, send half of it, close."""
    body = handler.page()
    handler.answer(body[: len(body) // 2], length=len(body))
    handler.close_connection = True


def charset(declared: str, encoding: str = "utf-8") -> Fault:
    """The page in `encoding` (the files are UTF-8) with a Content-Type that says `declared`."""

    def fault(handler: FaultyHandler) -> None:
        body = handler.page().decode("utf-8").encode(encoding)
        handler.answer(body, content_type=f"text/html; charset={declared}")

    return fault


def redirect_loop(handler: FaultyHandler) -> None:
    """302 back to the same URL."""
    handler.send_response(302)
    handler.send_header("Location", handler.path)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


class Server(ThreadingHTTPServer):
    # The default backlog of 5 drops connections a 16-request crawl opens at once; the kernel
    # retries them a second later, which a crawl with a 1-second download timeout counts as failed.
    request_queue_size = 64


class SiteServer:
    """Serves a directory on 127.0.0.1; `faults[path]` lists the faults to answer before the file."""

    def __init__(self, root: Path) -> None:
        self.faults: dict[str, list[Fault]] = {}
        self.delay = 0.0  # seconds before each answer, to slow a crawl down
        self.requests: Counter[str] = Counter()
        self.arrivals: dict[str, list[float]] = {}  # path -> when each request came (monotonic)
        self.stopped = threading.Event()  # ends the waits of slow answers
        handler = type("Handler", (FaultyHandler,), {"site": self})
        self.httpd = Server(("127.0.0.1", 0), partial(handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> "SiteServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def crawl_command(start_url: str, db_path: Path, *args: str, **settings: str) -> list[str]:
    """The `scrapy crawl books` command line for a site and a database (operations.db beside it)."""
    command = [sys.executable, "-m", "scrapy", "crawl", "books", *args]
    merged = {
        **FAST,
        "BOOKS_START_URL": start_url,
        "BOOKS_DB_PATH": str(db_path),
        "BOOKS_OPS_DB_PATH": str(db_path.with_name("operations.db")),
        **settings,
    }
    for name, value in merged.items():
        command += ["-s", f"{name}={value}"]
    return command


def crawl_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The inherited environment less any BOOKS_*, plus `env`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}, **(env or {})}


def crawl(
    start_url: str,
    db_path: Path,
    *args: str,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
    **settings: str,
) -> subprocess.CompletedProcess:
    """Run the real `scrapy crawl books` in a subprocess from the project directory
    (`preexec_fn` runs in the child before Scrapy starts, to set resource limits)."""
    return subprocess.run(
        crawl_command(start_url, db_path, *args, **settings), cwd=PROJECT, env=crawl_env(env),
        capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn,
    )


def start_crawl(start_url: str, db_path: Path, **settings: str) -> subprocess.Popen:
    """`scrapy crawl books` in the background (stderr piped, as text), for tests that signal it."""
    return subprocess.Popen(
        crawl_command(start_url, db_path, **settings), cwd=PROJECT, env=crawl_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def wait_until(what: Callable[[], object], seconds: float = 60, why: Callable[[], str] | None = None):
    """Poll what() every 0.2 s until it returns something truthy, and return that; past `seconds`,
    fail the test (with why(), say a server's log, as its message)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds}s" + (f": {why()}" if why else ""))


def query(path: Path, sql: str, params=()) -> list[dict]:
    """Independent read-only read of a database file, for expected figures."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()


def publish_generated_site(workdir: Path, books: int) -> tuple[Path, Path]:
    """A generated site of `books` books under workdir/site and the books database a real crawl of it
    published (workdir/books.db, its journal beside it): (site root, books database)."""
    from sitebuilder import build_site, sample_books  # tests' own module, importable from here too

    site = build_site(workdir / "site", sample_books(books))
    with SiteServer(site) as server:
        result = crawl(server.url, workdir / "books.db")
    assert result.returncode == 0, result.stderr[-3000:]
    return site, workdir / "books.db"
