"""The title search index: every book's title, case-folded, in an FTS5 trigram table.

`/api/v1/books/search?title=` means "contains, in any case" with full Unicode case folding (Python's
str.casefold: `CAFÉ` finds `Café`, `STRASSE` finds `Straße`). The table holds casefold(title) and
indexes it with the trigram tokenizer taking case as it is (`case_sensitive 1`), so a folded term's
phrase query is an exact substring test on the folded title, answered from the index:
- terms of 3 characters or more (once folded): a trigram phrase query, exact;
- shorter terms (which trigrams cannot answer): instr() over the folded titles, a scan in C;
- LIKE and GLOB wildcards, quotes and FTS5 operators are plain characters in either case.

Derived data like the aggregates: (re)built by storage.ensure_db_shape before every publication, so
it matches the published books; nothing here runs per request but the query.
"""

from __future__ import annotations

from sqlite_utils import Database

TITLE_INDEX = "book_titles_folded"
TRIGRAM = 3  # characters per trigram: shorter folded terms cannot use the index


def fold(text: str) -> str:
    """The one case folding of titles and terms: Python's full Unicode casefold()."""
    return text.casefold()


def ensure_title_index(db: Database) -> None:
    """Build the folded-title trigram table afresh from the books table (idempotent)."""
    with db.conn:
        db.execute(f"drop table if exists {TITLE_INDEX}")
        db.execute(
            f"create virtual table {TITLE_INDEX} using fts5(title, tokenize='trigram case_sensitive 1')"
        )
        rows = ((id_, fold(title)) for id_, title in db.conn.execute("select id, title from books"))
        db.conn.executemany(f"insert into {TITLE_INDEX} (rowid, title) values (?, ?)", rows)


def title_condition(term: str, id_column: str = "b.id") -> tuple[str, dict]:
    """(SQL condition, params): `id_column` is a book whose folded title contains the folded term."""
    folded = fold(term)
    if len(folded) >= TRIGRAM:
        phrase = '"' + folded.replace('"', '""') + '"'
        return (
            f"{id_column} in (select rowid from {TITLE_INDEX} where {TITLE_INDEX} match :title_phrase)",
            {"title_phrase": phrase},
        )
    return (
        f"{id_column} in (select rowid from {TITLE_INDEX} where instr(title, :title_folded) > 0)",
        {"title_folded": folded},
    )
