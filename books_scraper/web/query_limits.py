"""What one SQL query of the publication may cost (applied to every Datasette connection).

Three caps, each a public SQLite or sqlite3 mechanism:
- one value: SQLITE_LIMIT_LENGTH. The longest stored value is a description under 9 KB, so every
  stored value (and hex() of it) reads, while `randomblob(900000000)` is refused by SQLite itself;
- one row: SQLITE_LIMIT_COLUMN columns, so one row is at most MAX_COLUMNS x MAX_VALUE_BYTES;
- one result: the bytes of every value fetched, counted as sqlite3 builds each row (the connection's
  row factory). `select description, description, ... from books` builds no big value, yet a page of
  `max_returned_rows` of them would take hundreds of MB and seconds of JSON encoding on the event
  loop; past MAX_RESULT_BYTES the query stops with an error Datasette answers as a 400.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar
from weakref import WeakKeyDictionary

MAX_VALUE_BYTES = 32_000
MAX_COLUMNS = 100
# The whole books table with every column is about 1.5 MB; a JSON page of results stays near 10 MB.
MAX_RESULT_BYTES = 8_000_000
NUMBER_BYTES = 8  # what an integer, a float or a NULL counts for


class ResultTooLarge(sqlite3.OperationalError):
    """A query's rows add up to more than the result budget (Datasette answers 400)."""


class ResultBudget:
    """A row factory that counts the bytes each cursor has fetched and stops it past the budget."""

    def __init__(self, max_bytes: int = MAX_RESULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.spent: WeakKeyDictionary[sqlite3.Cursor, int] = WeakKeyDictionary()

    def __call__(self, cursor: sqlite3.Cursor, values: tuple) -> sqlite3.Row:
        spent = self.spent.get(cursor, 0) + sum(
            len(value) if isinstance(value, (str, bytes)) else NUMBER_BYTES for value in values
        )
        if spent > self.max_bytes:
            raise ResultTooLarge(
                f"the query's result is larger than {self.max_bytes // 1_000_000} MB: "
                "select fewer rows or columns, or page with limit/offset"
            )
        self.spent[cursor] = spent
        return sqlite3.Row(cursor, values)


def limit_connection(conn: sqlite3.Connection, budget: Any = None) -> None:
    """Apply the three caps to a connection (rows stay sqlite3.Row, as Datasette reads them)."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
    conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, MAX_COLUMNS)
    conn.row_factory = budget or ResultBudget()


T = TypeVar("T")


def unbudgeted(compute: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """compute(conn) without the result budget: for the project's own whole-table reads (aggregates,
    features), which grow with the catalogue and are not a client's query. Datasette runs each
    execute_fn on a connection only that thread uses, so the swap is seen by nothing else."""

    def run(conn: sqlite3.Connection) -> T:
        factory = conn.row_factory
        conn.row_factory = sqlite3.Row
        try:
            return compute(conn)
        finally:
            conn.row_factory = factory

    return run
