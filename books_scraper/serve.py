"""Serve the books with Datasette: `python -m books_scraper.serve [--host H] [--port P]`.

Crawls first when there is no books database yet, creates the writable operations database when it
is missing, then replaces itself with `datasette serve`: the books database immutable, the
operations database mutable, metadata.yml and plugins/ from the project root.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from books_scraper.operations import open_operations_db

PROJECT = Path(__file__).resolve().parents[1]
METADATA = PROJECT / "metadata.yml"
PLUGINS = PROJECT / "plugins"

# metadata.yml describes the databases by these names, which Datasette takes from the file names.
BOOKS_DB_NAME = "books"
OPERATIONS_DB_NAME = "operations"

# A public, read-only service (docs/publication.md says why each one).
PUBLIC_SETTINGS: dict[str, object] = {
    "sql_time_limit_ms": 2000,
    "max_returned_rows": 1000,
    "allow_csv_stream": True,
    "max_csv_mb": 50,
    "default_cache_ttl": 60,
    "truncate_cells_html": 120,
    "facet_time_limit_ms": 500,
    "default_allow_sql": True,
    "allow_download": True,
}

logger = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="python -m books_scraper.serve", description=__doc__)
    parser.add_argument("--host", default=env.get("BOOKS_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("BOOKS_PORT", "8001")))
    parser.add_argument("--books-db", type=Path, default=env.get("BOOKS_DB_PATH", "data/books.db"))
    parser.add_argument(
        "--operations-db", type=Path, default=env.get("BOOKS_OPS_DB_PATH", "data/operations.db")
    )
    args = parser.parse_args(argv)
    args.books_db, args.operations_db = args.books_db.resolve(), args.operations_db.resolve()
    for path, name in ((args.books_db, BOOKS_DB_NAME), (args.operations_db, OPERATIONS_DB_NAME)):
        if path.stem != name:
            parser.error(f"{path} must be named {name}.db: metadata.yml describes database {name!r}")
    return args


def crawl(books_db: Path, operations_db: Path) -> None:
    """Run `scrapy crawl books` (BOOKS_START_URL and friends come from the environment)."""
    logger.warning("no books database at %s: crawling first", books_db)
    command = [sys.executable, "-m", "scrapy", "crawl", "books"]
    command += ["-s", f"BOOKS_DB_PATH={books_db}", "-s", f"BOOKS_OPS_DB_PATH={operations_db}"]
    subprocess.run(command, cwd=PROJECT, check=True)


def ensure_operations_db(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    open_operations_db(str(path)).close()


def datasette_command(
    books_db: Path, operations_db: Path, host: str, port: int
) -> list[str]:
    """The plain `datasette serve` invocation for this publication."""
    command = [sys.executable, "-m", "datasette", "serve", "-i", str(books_db), str(operations_db)]
    command += ["--metadata", str(METADATA), "--plugins-dir", str(PLUGINS)]
    command += ["--host", host, "--port", str(port)]
    for name, value in PUBLIC_SETTINGS.items():
        if isinstance(value, bool):
            value = "on" if value else "off"
        command += ["--setting", name, str(value)]
    return command


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    ensure_operations_db(args.operations_db)
    if not args.books_db.exists():
        try:
            crawl(args.books_db, args.operations_db)
        except subprocess.CalledProcessError as error:
            sys.exit(f"the first crawl failed (exit {error.returncode}); nothing to serve")
    command = datasette_command(args.books_db, args.operations_db, args.host, args.port)
    logger.info("serving on http://%s:%s/", args.host, args.port)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
