"""Results computed once per published books database, not once per request.

The books database is served immutable and a crawl publishes a new file with os.replace, so the
file's identity (inode, size, mtime, and its WAL's if any) names one version of the data.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from books_scraper.web.query_limits import unbudgeted

MAX_ENTRIES = 32


def database_version(db) -> tuple:
    if not db.path:
        return (db.name, "memory")
    identity = [db.name, db.path]
    for path in (db.path, f"{db.path}-wal"):
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            continue
        identity += [stat.st_ino, stat.st_size, stat.st_mtime_ns]
    return tuple(identity)


class VersionCache:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple, Any] = OrderedDict()
        self.computed = 0  # how many times a value was computed, for tests

    async def get(self, db, name: str, compute: Callable[[Any], Any]) -> Any:
        """compute(conn) on the database's read connection, once per (name, database version);
        a whole-table read of the project's own, so outside the per-query result budget."""
        key = (name, *database_version(db))
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        value = await db.execute_fn(unbudgeted(compute))
        self.computed += 1
        self.entries[key] = value
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return value


cache = VersionCache()
