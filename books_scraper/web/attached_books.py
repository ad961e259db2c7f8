"""The operations database's connections see the published books as `books` (attached read-only,
immutable), so a query there can score predictions against the ratings in one statement: the
operations dashboard's MAE per model. Each server process attaches the file it serves."""

from __future__ import annotations

import sqlite3
from urllib.parse import quote

from books_scraper.web.served_metadata import BOOKS_DATABASE, OPERATIONS_DATABASE


def attach_books(conn: sqlite3.Connection, database: str, datasette) -> None:
    books = datasette.databases.get(BOOKS_DATABASE)
    if database != OPERATIONS_DATABASE or books is None or not books.path:
        return
    # Datasette opens every file connection with uri=True, so ATTACH reads a URI too.
    conn.execute(f"attach database ? as {BOOKS_DATABASE}", [f"file:{quote(books.path)}?mode=ro&immutable=1"])
