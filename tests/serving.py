"""The publication as it is served: in-process Datasette for client tests, the real server process
(a supervisor and its worker processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from datasette.app import Datasette
from support import PROJECT

from books_scraper.web.served_metadata import load_metadata, served_metadata
from books_scraper.web.worker import build_datasette


def publication(books_db: Path, operations_db: Path, **settings: object) -> Datasette:
    """The same Datasette each worker of `python -m books_scraper.serve` runs, in process (settings override)."""
    return build_datasette(books_db, operations_db, served_metadata(os.environ), **settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """The live processes whose parent is `pid`, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class ServeProcess:
    """`python -m books_scraper.serve` on 127.0.0.1 and a free port, stopped on exit."""

    def __init__(
        self, books_db: Path, operations_db: Path, log: Path, startup: float = 60, **env: str
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.startup = startup
        command = [sys.executable, "-m", "books_scraper.serve", "--port", str(self.port)]
        command += ["--books-db", str(books_db), "--operations-db", str(operations_db)]
        base = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
        self.log = log
        self.command, self.env = command, {**base, **env}

    def __enter__(self) -> "ServeProcess":
        self.start()
        try:
            self.wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> None:
        self.log_file = open(self.log, "wb")
        self.process = subprocess.Popen(
            self.command, cwd=PROJECT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT
        )

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + self.startup
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "-/versions.json", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise RuntimeError(f"serve did not answer within {self.startup}s:\n{self.output()}")

    def workers(self) -> list[int]:
        """The process ids of the server's workers (the supervisor's children)."""
        return children(self.process.pid)

    def output(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log_file.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()
