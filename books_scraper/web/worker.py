"""One server process: Datasette over one published books file, answering on a socket it is handed.

`python -m books_scraper.web.worker --control-fd N --parent PID` is what books_scraper/web/supervisor.py
starts, one per published books file. It first imports Datasette and what the plugins use (most of
its start-up), then reads its assignment from the control socket: the listening socket and the ready
pipe (passed as file descriptors), the books file, the operations file, the served metadata and the
environment every worker shares. So the supervisor can start it before it knows what to serve (at
start-up, while it checks the files), and it exits quietly if the supervisor goes first.

The books file it is given is a link that always names the same published version, so every
connection the worker opens, in whichever thread, reads the same data. It listens on the
supervisor's socket (shared with the worker it replaces), says on the ready pipe when it accepts,
and on SIGTERM stops accepting, finishes what it has begun and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib
import json
import os
import pkgutil
import signal
import socket
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from datasette.app import Datasette
from datasette.database import Database

from books_scraper import aggregates
from books_scraper.logs import configure_process_logging
# What every worker serves, defined where the supervisor reads it without importing Datasette.
from books_scraper.web.served_metadata import (  # noqa: F401 (PLUGINS, PUBLIC_SETTINGS, TEMPLATES: re-exported)
    BOOKS_DATABASE, GRACEFUL_SECONDS, OPERATIONS_DATABASE, PLUGINS, PUBLIC_SETTINGS, TEMPLATES,
)

# Seconds between no longer accepting and closing idle connections: a connection accepted just
# before has its request read and answered instead of being closed unanswered.
DRAIN_SECONDS = 0.5
PR_SET_PDEATHSIG = 1
# The most of a request line and headers a worker reads before refusing the request (h11's
# max_incomplete_event_size; its default, 16 KiB, refused a URL over 16 KiB whenever the network
# delivered it in pieces). A ?sql= at the 32,000-byte limit percent-encoded is under 96 KB, so it
# always reaches Datasette and gets the limit's own 400. Past this uvicorn answers a bare 400 and
# closes the connection, a reset if the client is still sending (docs/operations.md, "Limits").
MAX_REQUEST_HEAD_BYTES = 128 * 1024
# The packages the plugins in plugins/ import, imported before the assignment comes: Datasette then
# only runs the plugin files themselves (hook registrations) once it is told what to serve.
PLUGIN_PACKAGES = ("books_scraper.api", "books_scraper.web")
ASSIGNMENT_BYTES = 1 << 20  # far more than paths and a few variables take


@dataclass(frozen=True)
class Assignment:
    """What to serve, and where: sent by the supervisor on the control socket."""

    listener_fd: int
    ready_fd: int
    books_db: Path
    operations_db: Path
    metadata: Path
    environment: dict[str, str]


class NoAggregates(RuntimeError):
    """The books file lacks the aggregates this version reads (published by an older version)."""


def inspect_data(books_db: Path) -> dict:
    """Datasette's inspect data for the books file (what `datasette inspect` writes), from what its
    publication stored: the table counts and the publication's hash. So Datasette neither counts
    every table at startup nor reads the whole file to hash it on the first request."""
    conn = sqlite3.connect(f"file:{books_db}?mode=ro&immutable=1", uri=True)
    try:
        version = aggregates.built_version(conn)
        if version != aggregates.AGGREGATES_VERSION:
            raise NoAggregates(
                f"{books_db} has {'aggregates version %s' % version if version else 'no aggregates'},"
                f" this version reads version {aggregates.AGGREGATES_VERSION}: it was published by another"
                " version; python -m books_scraper.serve rebuilds it at startup"
            )
        counts = aggregates.table_counts(conn)
        publication_hash = aggregates.publication_hash(conn)
    finally:
        conn.close()
    return {
        books_db.stem: {
            "hash": publication_hash,
            "size": books_db.stat().st_size,
            "file": str(books_db),
            "tables": {name: {"count": count} for name, count in counts.items()},
        }
    }


def build_datasette(
    books_db: Path, operations_db: Path, metadata: dict, secret: str | None = None, **settings: object
) -> Datasette:
    """The publication: the books database immutable, the operations database mutable, listed in
    that order on the home page (Datasette lists its `files` before its `immutables`). NoAggregates
    when the books file has none."""
    ds = Datasette(
        immutables=[str(books_db)],
        inspect_data=inspect_data(Path(books_db)),
        metadata=metadata,
        plugins_dir=str(PLUGINS),
        template_dir=str(TEMPLATES),
        settings={**PUBLIC_SETTINGS, **settings},
        secret=secret,
    )
    ds.add_database(Database(ds, path=str(operations_db), is_mutable=True), name=OPERATIONS_DATABASE)
    return ds


async def publication_facts(ds: Datasette) -> dict:
    """What this worker serves, read through Datasette: its book count (as its publication counted
    it) and the run that published it."""
    db = ds.get_database(BOOKS_DATABASE)
    facts = {"books": (await db.table_counts())["books"]}
    if await db.table_exists("crawl_runs"):
        run = (await db.execute(
            "select id, finished_at from crawl_runs where status = 'published' order by id desc limit 1"
        )).first()
        if run:
            facts.update(run_id=run["id"], published_at=run["finished_at"])
    return facts


class Server(uvicorn.Server):
    """uvicorn's server that tells when it accepts, and drains before it closes connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.on_ready()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:  # the asyncio servers startup() made: stop accepting first
            server.close()
        await asyncio.sleep(DRAIN_SECONDS)
        await super().shutdown(sockets=sockets)


def server_config(app) -> uvicorn.Config:
    """uvicorn's settings for a worker: h11 named (httptools, if installed, has no such limit)."""
    return uvicorn.Config(
        app, lifespan="on", log_level="info", timeout_graceful_shutdown=GRACEFUL_SECONDS,
        http="h11", h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )


def die_with_parent(parent: int) -> None:
    """SIGTERM this process when the supervisor dies, even by SIGKILL (Linux), so none is orphaned."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the supervisor still stops its workers whenever it stops normally
    if os.getppid() != parent:
        sys.exit()  # the supervisor is gone already (it stopped before needing this worker): quietly


def report_ready(ready_fd: int, facts: dict) -> None:
    os.write(ready_fd, (json.dumps({"pid": os.getpid(), **facts}) + "\n").encode())
    os.close(ready_fd)


def receive_assignment(control_fd: int) -> Assignment | None:
    """The supervisor's assignment; None when it closed the control socket without one (it stopped)."""
    with socket.socket(fileno=control_fd) as control:
        message, fds, _flags, _address = socket.recv_fds(control, ASSIGNMENT_BYTES, 2)
        while chunk := control.recv(ASSIGNMENT_BYTES):  # the sender closes after one message
            message += chunk
    if not message:
        return None
    if len(fds) != 2:
        sys.exit(f"worker: the assignment came with {len(fds)} file descriptors, not 2")
    fields = json.loads(message)
    return Assignment(fds[0], fds[1], Path(fields["books_db"]), Path(fields["operations_db"]),
                      Path(fields["metadata"]), fields["environment"])


def preload() -> None:
    """Import the modules of PLUGIN_PACKAGES, while the supervisor gets ready."""
    for package in PLUGIN_PACKAGES:
        for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
            if module.name not in ("worker", "supervisor"):  # this process's own code, and not needed
                importlib.import_module(f"{package}.{module.name}")


async def serve(assignment: Assignment) -> None:
    metadata = json.loads(assignment.metadata.read_text(encoding="utf-8"))
    # One secret for every worker (from the supervisor): signed cookies and CSRF tokens survive a reload.
    try:
        ds = build_datasette(assignment.books_db, assignment.operations_db, metadata,
                             os.environ.get("DATASETTE_SECRET"))
    except NoAggregates as error:
        sys.exit(f"worker: {error}")
    await ds.invoke_startup()
    facts = await publication_facts(ds)  # also opens the database before the first request
    config = server_config(ds.app())
    listener = socket.socket(fileno=assignment.listener_fd)
    await Server(config, lambda: report_ready(assignment.ready_fd, facts)).serve(sockets=[listener])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m books_scraper.web.worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-fd", type=int, required=True,
                        help="a Unix socket, inherited, to read the assignment from")
    parser.add_argument("--parent", type=int, required=True, help="the supervisor's process id")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    configure_process_logging(os.environ)  # as the supervisor's; the startup hook takes over from it
    args = parse_args(argv)
    die_with_parent(args.parent)
    try:
        preload()
        assignment = receive_assignment(args.control_fd)
        if assignment is None:
            return
        os.environ.update(assignment.environment)  # before anything reads it: crawl jobs inherit it
        asyncio.run(serve(assignment))
    except KeyboardInterrupt:
        # Ctrl-C at a terminal reaches every worker too, waiting for its assignment (say during the
        # first crawl) or serving (uvicorn has already stopped gracefully): the supervisor says the rest.
        pass


if __name__ == "__main__":
    main()
