"""Limits on what one anonymous `?sql=` query can make SQLite build in memory."""

import sqlite3

from datasette import hookimpl

from books_scraper.serve import MAX_VALUE_BYTES


@hookimpl
def prepare_connection(conn):
    # A bigger string or blob fails with "string or blob too big", which Datasette answers as a 400.
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
