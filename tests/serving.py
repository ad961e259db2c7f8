"""The publication as it is served: in-process Datasette for client tests, the real server process."""

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

from books_scraper.serve import PLUGINS, PUBLIC_SETTINGS
from books_scraper.web.served_metadata import load_metadata, served_metadata


def publication(books_db: Path, operations_db: Path, **settings: object) -> Datasette:
    """The same Datasette `python -m books_scraper.serve` runs, in process (settings override)."""
    return Datasette(
        files=[str(operations_db)],
        immutables=[str(books_db)],
        metadata=served_metadata(os.environ),
        plugins_dir=str(PLUGINS),
        settings={**PUBLIC_SETTINGS, **settings},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        self.log_file = open(self.log, "wb")
        self.process = subprocess.Popen(
            self.command, cwd=PROJECT, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT
        )
        try:
            self.wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

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
