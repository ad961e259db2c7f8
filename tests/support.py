"""Test support: a local HTTP server with fault injection, and the real `scrapy crawl books`."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
FIXTURE_SITE = PROJECT.parent / "shared" / "fixtures" / "books.toscrape.com"
NO_FIXTURE_SITE = f"the real site's copy is absent ({FIXTURE_SITE})"

# The crawl as tests run it: politeness off for a server on 127.0.0.1.
FAST = {"AUTOTHROTTLE_ENABLED": "0", "CONCURRENT_REQUESTS": "16", "DOWNLOAD_DELAY": "0"}


class SiteServer:
    """Serves a directory on 127.0.0.1; `faults[path]` lists statuses to answer before the file."""

    def __init__(self, root: Path) -> None:
        self.faults: dict[str, list[int]] = {}
        self.delay = 0.0  # seconds before each answer, to slow a crawl down
        self.requests: Counter[str] = Counter()
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests[self.path] += 1
                time.sleep(server.delay)
                pending = server.faults.get(self.path)
                if pending:
                    self.send_error(pending.pop(0))
                    return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def __enter__(self) -> "SiteServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def crawl(
    start_url: str,
    db_path: Path,
    *args: str,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    **settings: str,
) -> subprocess.CompletedProcess:
    """Run the real `scrapy crawl books` in a subprocess from the project directory
    (`env` adds environment variables to the inherited ones, less any BOOKS_*)."""
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
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
    return subprocess.run(
        command, cwd=PROJECT, env={**inherited, **(env or {})}, capture_output=True, text=True, timeout=timeout
    )


def query(path: Path, sql: str, params=()) -> list[dict]:
    """Independent read-only read of a database file, for expected figures."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, params)]
    finally:
        conn.close()
