"""Training data: the full book rows, a deterministic train/test split and CSV/NDJSON encoding."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable

from books_scraper.storage import BOOK_COLUMNS

TRAINING_COLUMNS = [*BOOK_COLUMNS, "category"]
TRAINING_SELECT = (
    "select " + ", ".join(f"b.{name}" for name in BOOK_COLUMNS)
    + ", c.name as category from books b join categories c on c.id = b.category_id"
)


def in_test_split(book_id: int, seed: int, test_size: float) -> bool:
    """A book's side depends only on (seed, id): stable across crawls and as the catalogue grows."""
    digest = hashlib.sha256(f"{seed}:{book_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_size


def keep(book_id: int, split: str | None, seed: int, test_size: float) -> bool:
    if split is None:
        return True
    return in_test_split(book_id, seed, test_size) == (split == "test")


def csv_chunk(rows: Iterable[dict], columns: list[str], header: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def ndjson_chunk(rows: Iterable[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)
