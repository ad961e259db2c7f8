"""Serve the books with Datasette: `python -m books_scraper.serve [--host H] [--port P]`.

The entry point of `make run`; books_scraper/startup.py does the work. Its first step starts the
server's first worker process (books_scraper/web/worker.py): a worker spends most of its start-up,
about a second, importing Datasette and what the plugins use, and it does so on the other core while
this process imports, checks the files and, the first time, crawls. The worker is told what to serve
once there is something to serve (docs/operations.md, "Start-up").
"""

from __future__ import annotations

from collections.abc import Sequence

from books_scraper.web.supervisor import spawn_worker


def main(argv: Sequence[str] | None = None) -> None:
    spawned = spawn_worker()
    from books_scraper import startup  # noqa: PLC0415 (after the worker's start: 0.35 s of imports)

    startup.main(argv, spawned)


if __name__ == "__main__":
    main()
