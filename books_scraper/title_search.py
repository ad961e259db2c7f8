"""The title search index: every book's title, case-folded, in an FTS5 trigram table.

`/api/v1/books/search?title=` means "contains, in any case" with full Unicode case folding (Python's
str.casefold: `CAFÉ` finds `Café`, `STRASSE` finds `Straße`). A plain table holds casefold(title)
and an FTS5 table indexes it with the trigram tokenizer taking case as it is (`case_sensitive 1`), so
a folded term's phrase query is an exact substring test on the folded title, answered from the index:
- terms of 3 characters or more (once folded): a trigram phrase query, exact;
- 1 or 2 characters: the trigrams of the index's vocabulary that contain them, ORed, and the few
  titles shorter than a trigram (a partial index): exact too; but for a common letter or pair (in
  more than FEW_TRIGRAMS trigrams), instr() over the plain folded titles, a scan in C that soon
  finds the many titles holding it;
- LIKE and GLOB wildcards, quotes and FTS5 operators are plain characters in either case.

A title's row is keyed by its POSITION in title order (books.title in binary collation, then id: the
order and tie-break of the API's keyset for sort=title), and the index's rowid is that position, so
the index returns a term's matches in title order: a page of a title search sorted by title is the
first rows of its matches (`TitleMatch.positions`), with no match read for its title and sorted. The
book's id is a unique column beside it.

Derived data like the aggregates: (re)built by storage.ensure_db_shape before every publication, so
it matches the published books; nothing here runs per request but the query.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

FOLDED_TITLES = "book_titles_folded"  # position, id, casefold(title): a plain table, scanned for short terms
TITLE_INDEX = "book_titles_trigram"  # its FTS5 trigram index, rowid the position (external content: no second copy)
TITLE_TRIGRAMS = "book_titles_trigrams"  # the index's vocabulary: every distinct trigram, one a row
TRIGRAM = 3  # characters per trigram: shorter folded terms cannot use the index
# A term shorter than a trigram contained in at most this many of the vocabulary's trigrams is looked
# up by them ('é': 3 of them, 4 ms at 1M books, against 280 ms scanning every title); in more, it is
# common ('e': 890), and a scan of the titles finds its many matches soon.
FEW_TRIGRAMS = 100
# Looking a term up by its trigrams reads the vocabulary about this many times: worth it only when
# that is less than reading every title (at 1,000 books the vocabulary has 4,422 trigrams).
VOCABULARY_READS = 4


def fold(text: str) -> str:
    """The one case folding of titles and terms: Python's full Unicode casefold()."""
    return text.casefold()


def ensure_title_index(db: Database) -> None:
    """Build the folded titles and their trigram index afresh from the books table (idempotent)."""
    with db.conn:
        db.execute(f"drop table if exists {TITLE_INDEX}")
        db.execute(f"drop table if exists {FOLDED_TITLES}")
        db.execute(
            f"create table {FOLDED_TITLES} (position integer primary key, id integer not null unique,"
            " title text not null)"
        )
        # Positions 1, 2, ... in the keyset's title order (binary collation, then id), as SQLite sorts.
        in_order = db.conn.execute("select id, title from books order by title, id")
        rows = ((position, id_, fold(title)) for position, (id_, title) in enumerate(in_order, 1))
        db.conn.executemany(f"insert into {FOLDED_TITLES} (position, id, title) values (?, ?, ?)", rows)
        db.execute(
            f"create virtual table {TITLE_INDEX} using fts5(title, content='{FOLDED_TITLES}',"
            " content_rowid='position', columnsize=0, tokenize='trigram case_sensitive 1')"
        )
        db.execute(f"insert into {TITLE_INDEX} ({TITLE_INDEX}) values ('rebuild')")
        # Copied out of fts5vocab, which reads the whole index on every query to count documents.
        db.execute(f"drop table if exists {TITLE_TRIGRAMS}")
        db.execute(f"create table {TITLE_TRIGRAMS} (trigram text primary key) without rowid")
        db.execute(f"create virtual table temp.title_vocabulary using fts5vocab(main, {TITLE_INDEX}, 'row')")
        db.execute(f"insert into {TITLE_TRIGRAMS} select term from temp.title_vocabulary")
        db.execute("drop table temp.title_vocabulary")
        # The titles too short for a trigram, which a 2-character search reads besides the index.
        db.execute(f"create index {FOLDED_TITLES}_short on {FOLDED_TITLES} (id) where length(title) < {TRIGRAM}")


@dataclass(frozen=True)
class TitleMatch:
    """A title search as SQL, in the two forms a query plan needs, with its params."""

    matching_ids: str  # `select id ...`: every matching book id, in no order (to drive a query)
    test: str  # a condition on one book row: does its id match (to filter a scan)
    params: dict
    # A trigram term's `select position ... where ...` from the index alone: every match's position
    # in title order, which an `order by rowid` reads without sorting; it ends in its WHERE, so a
    # condition on the rowid (the position) may be ANDed on.
    positions: str | None = None


def title_match(term: str, id_column: str = "b.id") -> TitleMatch:
    """Books whose folded title contains the folded term: from 3 folded characters, a trigram phrase
    query (an exact substring of the folded title); 1 or 2 characters, every trigram of the
    vocabulary that contains them (a title of 3 characters or more containing them has one), plus
    the titles too short for a trigram, or instr() over the folded titles for a common term."""
    folded = fold(term)
    if "\0" in folded:
        # FTS5's query syntax and SQLite's text functions end a string at a NUL, and no title holds one:
        # an HTML parser drops NUL characters from a page's text. So such a term matches nothing.
        return TitleMatch(
            f"select id from {FOLDED_TITLES} where 0", "0", {},
            positions=f"select rowid as position from {TITLE_INDEX} where 0",
        )
    test = f"instr((select title from {FOLDED_TITLES} where id = {id_column}), :title_folded) > 0"
    position_of = f"(select position from {FOLDED_TITLES} where id = {id_column})"
    if len(folded) >= TRIGRAM:
        phrase = '"' + folded.replace('"', '""') + '"'
        matches = f"select rowid as position from {TITLE_INDEX} where {TITLE_INDEX} match :title_phrase"
        return TitleMatch(
            f"select f.id as id from ({matches}) m cross join {FOLDED_TITLES} f on f.position = m.position",
            f"exists (select 1 from {TITLE_INDEX} where rowid = {position_of} and {TITLE_INDEX} match :title_phrase)",
            {"title_phrase": phrase},
            positions=matches,
        )
    # Shorter than a trigram: the trigrams of the index's vocabulary that contain the term, ORed, and
    # the titles too short for a trigram (a partial index); or, when more than FEW_TRIGRAMS contain
    # it (a common letter or pair, which many titles hold, soon found) or the vocabulary is not much
    # smaller than the titles (a small catalogue), instr() over the folded titles. A side's LIMIT 0
    # turns it off before SQLite reads any of it. '""' (an empty phrase)
    # matches nothing, for a term no trigram contains.
    titles = f"(select max(position) from {FOLDED_TITLES})"  # the positions run 1..n: a seek, not a count
    vocabulary = f"(select count(*) from (select 1 from {TITLE_TRIGRAMS} limit {titles}))"
    few = (f"(case when {vocabulary} * {VOCABULARY_READS} < {titles} then (select count(*) <= {FEW_TRIGRAMS}"
           f" from (select 1 from {TITLE_TRIGRAMS} where instr(trigram, :title_folded) limit {FEW_TRIGRAMS + 1}))"
           f" else 0 end)")
    trigrams = (
        f"""coalesce((select group_concat('"' || replace(trigram, '"', '""') || '"', ' OR ')"""
        f""" from {TITLE_TRIGRAMS} where instr(trigram, :title_folded)), '""')"""
    )
    return TitleMatch(
        f"select f.id as id from (select rowid as position from {TITLE_INDEX} where {TITLE_INDEX} match"
        f" {trigrams} limit iif({few}, -1, 0)) m cross join {FOLDED_TITLES} f on f.position = m.position"
        f" union all select * from (select id from {FOLDED_TITLES} where length(title) < {TRIGRAM}"
        f" and instr(title, :title_folded) limit iif({few}, -1, 0))"
        f" union all select * from (select id from {FOLDED_TITLES} where instr(title, :title_folded) > 0"
        f" limit iif({few}, 0, -1))",
        test,
        {"title_folded": folded},
    )
