"""What `python -m books_scraper.serve` does (books_scraper/serve.py): check, crawl first, then supervise.

Serve the books with Datasette and the /api/v1 REST API. Crawls first when there is no books
database yet, creates the writable operations database when it is missing, then serves them as
`datasette serve` would (the books database immutable, the operations database mutable,
metadata.yml and plugins/ from the project root) and serves each newly published books database
without a restart.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlite_utils import Database

from books_scraper import aggregates, jobs, publish, settings, storage
from books_scraper.api.config import ConfigError, parse_config
from books_scraper.logs import configure_process_logging
from books_scraper.operations import open_operations_db
from books_scraper.web.served_metadata import (
    API_PLUGIN, BOOKS_DATABASE, METADATA, OPERATIONS_DATABASE, PLUGINS, PROJECT, PUBLIC_SETTINGS,
    TEMPLATES, auth_summary, load_metadata, resolve_env, served_metadata,
)
from books_scraper.web.supervisor import Spawned, Supervisor, bind

# What Datasette is given: metadata.yml less the static tokens whose secret is unset.
SERVED_METADATA = ".served-metadata.json"

logger = logging.getLogger(__name__)


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535), from --port or BOOKS_PORT")
    return int(text)


def parse_args(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m books_scraper.serve",
        description=__doc__.split("\n\n")[1],
        epilog="Each default comes from the environment variable named beside it, then the value "
        "shown. Crawl settings (BOOKS_START_URL, BOOKS_CONTACT, ...) are read from the environment "
        "by the first crawl: see the README.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default=environ.get("BOOKS_HOST", "127.0.0.1"),
                        help="address to listen on (BOOKS_HOST); 0.0.0.0 for every interface")
    parser.add_argument("--port", type=port_number, default=environ.get("BOOKS_PORT", "8001"),
                        help="port to listen on (BOOKS_PORT)")
    parser.add_argument("--books-db", type=Path, default=settings.BOOKS_DB_PATH,
                        help="the published books database, crawled first when missing (BOOKS_DB_PATH)")
    parser.add_argument("--operations-db", type=Path, default=settings.BOOKS_OPS_DB_PATH,
                        help="the writable operations database, created when missing (BOOKS_OPS_DB_PATH)")
    parser.add_argument("--metadata", type=Path, default=METADATA,
                        help="the Datasette metadata, with the books-api configuration")
    args = parser.parse_args(argv)
    args.books_db, args.operations_db = args.books_db.resolve(), args.operations_db.resolve()
    for path, name in ((args.books_db, BOOKS_DATABASE), (args.operations_db, OPERATIONS_DATABASE)):
        if path.stem != name:
            parser.error(f"{path} must be named {name}.db: metadata.yml describes database {name!r}")
    return args


def listen(host: str, port: int) -> tuple[socket.socket | None, str | None]:
    """The listening socket, or why the server cannot listen there."""
    try:
        return bind(host, port), None
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return None, f"port {port} on {host} is already in use: stop what runs there or pass --port"
        return None, f"cannot listen on {host}:{port}: {error.strerror or error}"


def port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen there, checked before anything is crawled or started."""
    listener, problem = listen(host, port)
    if listener:
        listener.close()
    return problem


def config_problem(metadata: dict, environ: Mapping[str, str]) -> str | None:
    """What is wrong with the books-api block, in the one line the plugin's startup check would say."""
    try:
        parse_config(resolve_env((metadata.get("plugins") or {}).get(API_PLUGIN), environ))
    except ConfigError as error:
        return error.message
    return None


def crawl(books_db: Path, operations_db: Path) -> tuple[int, bool]:
    """Run `scrapy crawl books` (BOOKS_START_URL and friends come from the environment): its exit
    status, and whether Ctrl-C stopped it. A Ctrl-C at the terminal reaches the crawl too, which
    stops cleanly (journalled as cancelled, nothing published): this waits for it to finish."""
    logger.warning("no books database at %s: crawling first", books_db)
    command = [sys.executable, "-m", "scrapy", "crawl", "books"]
    command += ["-s", f"BOOKS_DB_PATH={books_db}", "-s", f"BOOKS_OPS_DB_PATH={operations_db}"]
    process = subprocess.Popen(command, cwd=PROJECT)
    interrupted = False
    while True:
        try:
            return process.wait(), interrupted
        except KeyboardInterrupt:
            interrupted = True  # a second Ctrl-C makes Scrapy stop at once; still wait


def outdated(books_db: Path) -> str | None:
    """What this version needs that the books file lacks (it was published by an older version):
    schema migrations, or the aggregates the server reads instead of scanning the books."""
    conn = sqlite3.connect(f"file:{books_db}?mode=ro", uri=True)
    try:
        pending = [migration.name for migration in storage.migrations.pending(Database(conn))]
        if pending:
            return "migrations " + ", ".join(pending)
        version = aggregates.built_version(conn)
    finally:
        conn.close()
    if version != aggregates.AGGREGATES_VERSION:
        return f"aggregates version {version}" if version else "no aggregates"
    return None


def reshape(staging: Path) -> None:
    """What a crawl's publication does to its file: migrations, then indexes, FTS and aggregates."""
    db = storage.open_books_db(str(staging))
    try:
        storage.ensure_db_shape(db)
        db.execute("pragma journal_mode = delete")
    finally:
        db.close()


def bring_up_to_date(books_db: Path) -> None:
    """Republish a books file an older version published (lock, staging copy, atomic swap), once,
    so every worker serves the tables it reads; a file already up to date is left alone."""
    missing = outdated(books_db)
    if missing is None:
        return
    logger.warning("%s was published by an older version (%s): building what this version reads, once",
                   books_db, missing)
    publish.republish(books_db, reshape)
    logger.info("%s republished with its aggregates", books_db)


def ensure_operations_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    open_operations_db(str(path)).close()


def write_served_metadata(directory: Path, environ: Mapping[str, str], metadata: dict) -> Path:
    """The metadata as this server gets it (books_scraper/web/served_metadata.py), beside the databases."""
    path = directory / SERVED_METADATA
    path.write_text(json.dumps(served_metadata(environ, metadata), indent=2), encoding="utf-8")
    return path


def datasette_command(
    books_db: Path, operations_db: Path, host: str, port: int, metadata: Path = METADATA
) -> list[str]:
    """The plain `datasette serve` equivalent of this publication (it serves the books file open at
    its start until restarted)."""
    command = [sys.executable, "-m", "datasette", "serve", "-i", str(books_db), str(operations_db)]
    command += ["--metadata", str(metadata), "--plugins-dir", str(PLUGINS)]
    command += ["--template-dir", str(TEMPLATES)]
    command += ["--host", host, "--port", str(port)]
    for name, value in PUBLIC_SETTINGS.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        command += ["--setting", name, str(value)]
    return command


def main(argv: Sequence[str] | None = None, spawned: Spawned | None = None) -> None:
    """Serve; `spawned` is the first worker's process, already importing (it serves once assigned)."""
    configure_process_logging(os.environ)  # BOOKS_LOG_FORMAT: text, or JSON like the server's
    args = parse_args(argv)
    problem = port_problem(args.host, args.port)
    if problem:
        sys.exit(f"serve: {problem}")
    metadata = load_metadata(args.metadata)
    problem = config_problem(metadata, os.environ)
    if problem:
        sys.exit(problem)
    try:
        jobs.parse_interval(os.environ.get(jobs.INTERVAL_VARIABLE))  # before a first crawl, not after
    except jobs.IntervalError as error:
        sys.exit(f"serve: {error}")
    ensure_operations_db(args.operations_db)
    if not args.books_db.exists():
        status, interrupted = crawl(args.books_db, args.operations_db)
        if interrupted:
            sys.exit("serve: stopped during the first crawl; nothing to serve")
        if status != 0:
            sys.exit(f"serve: the first crawl failed (exit {status}); nothing to serve")
    try:
        bring_up_to_date(args.books_db)
    except publish.CrawlLocked:
        sys.exit(f"serve: {args.books_db} needs its aggregates built and a crawl is running on it;"
                 " start again once it has published")
    except (OSError, sqlite3.Error) as error:
        sys.exit(f"serve: could not bring {args.books_db} up to date: {error}")
    for line in auth_summary(os.environ, metadata):
        logger.info("auth: %s", line)
    served = write_served_metadata(args.operations_db.parent, os.environ, metadata)
    listener, problem = listen(args.host, args.port)  # again: the first crawl may have been long
    if problem:
        sys.exit(f"serve: {problem}")
    logger.info("serving on http://%s:%s/", args.host, args.port)
    sys.exit(Supervisor(listener, args.books_db, args.operations_db, served, spawned).run())
