"""books_scraper.publish on its own: the sanity check at its boundaries, the staging copy, the atomic swap."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from books_scraper.publish import (
    CrawlLocked, crawl_lock, prepare_staging, published_book_count, replace_atomically, republish,
    sanity_problem, staging_path,
)


@pytest.mark.parametrize(
    "books_this_run,books_published,allow_shrink",
    [
        pytest.param(1, 0, False, id="a-first-crawl-of-one-book-publishes"),
        pytest.param(1000, 1000, False, id="as-many-books-as-published-publishes"),
        pytest.param(1200, 1000, False, id="more-books-than-published-publishes"),
        pytest.param(500, 1000, False, id="exactly-half-of-the-published-books-publishes"),
        pytest.param(51, 101, False, id="just-over-half-of-an-odd-count-publishes"),
        pytest.param(499, 1000, True, id="fewer-than-half-publishes-when-shrinking-is-allowed"),
        pytest.param(1, 1000, True, id="one-book-of-a-thousand-publishes-when-shrinking-is-allowed"),
    ],
)
def test_a_crawl_that_may_be_published(books_this_run, books_published, allow_shrink):
    assert sanity_problem("finished", books_this_run, books_published, allow_shrink) is None


@pytest.mark.parametrize(
    "books_this_run,books_published",
    [
        pytest.param(499, 1000, id="one-fewer-than-half-of-the-published-books-is-refused"),
        pytest.param(50, 101, id="just-under-half-of-an-odd-count-is-refused"),
        pytest.param(333, 1000, id="a-third-of-the-published-books-is-refused"),
        pytest.param(1, 1000, id="one-book-of-a-thousand-is-refused"),
    ],
)
def test_a_crawl_that_shrinks_the_catalogue_by_more_than_half_is_refused(books_this_run, books_published):
    problem = sanity_problem("finished", books_this_run, books_published, allow_shrink=False)
    assert problem == (
        f"crawl scraped {books_this_run} books, fewer than half of the {books_published} published;"
        " set BOOKS_ALLOW_SHRINK=1 to publish anyway"
    )


@pytest.mark.parametrize(
    "books_published,allow_shrink",
    [
        pytest.param(0, False, id="nothing-published-yet"),
        pytest.param(1000, False, id="a-thousand-published"),
        pytest.param(1000, True, id="even-when-shrinking-is-allowed"),
    ],
)
def test_a_crawl_of_no_books_is_refused(books_published, allow_shrink):
    assert sanity_problem("finished", 0, books_published, allow_shrink) == "crawl scraped no books"


@pytest.mark.parametrize(
    "reason",
    [
        pytest.param("shutdown", id="stopped-by-a-signal"),
        pytest.param("closespider_timeout", id="stopped-by-a-timeout"),
        pytest.param("cancelled", id="cancelled"),
        pytest.param("", id="no-reason-given"),
        pytest.param("Finished", id="a-reason-that-only-looks-like-finished"),
    ],
)
def test_a_crawl_that_did_not_finish_normally_is_refused(reason):
    # A full catalogue and shrinking allowed: the reason alone refuses it.
    problem = sanity_problem(reason, 1000, 1000, allow_shrink=True)
    assert problem == f"crawl did not finish normally (reason: {reason})"


def make_db(path: Path, titles: list[str], journal_mode: str = "delete") -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"pragma journal_mode = {journal_mode}")
        with conn:
            conn.execute("create table books (id integer primary key, title text)")
            conn.executemany("insert into books (title) values (?)", [(t,) for t in titles])
    finally:
        conn.close()


def titles(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute("select title from books order by id")]


def read_titles(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return titles(conn)
    finally:
        conn.close()


OLD = [f"old book {n}" for n in range(2000)]  # a few hundred KB: many pages a copy would overwrite
NEW = [f"new book {n}" for n in range(3000)]


@pytest.fixture
def published_and_staging(tmp_path: Path) -> tuple[Path, Path]:
    published = tmp_path / "books.db"
    make_db(published, OLD)
    staging = staging_path(published)
    make_db(staging, NEW)
    return published, staging


def test_the_swap_is_a_rename_leaving_no_staging_file(published_and_staging):
    published, staging = published_and_staging
    old_inode, new_inode = published.stat().st_ino, staging.stat().st_ino
    replace_atomically(staging, published)
    assert published.stat().st_ino == new_inode != old_inode  # the staging file itself, renamed
    assert not staging.exists()
    assert sorted(p.name for p in published.parent.iterdir()) == ["books.db"]  # no temporary left over
    assert read_titles(published) == NEW


def test_a_reader_of_the_old_file_keeps_reading_consistent_old_data(published_and_staging):
    published, staging = published_and_staging
    old_bytes = published.read_bytes()
    reader = sqlite3.connect(f"file:{published}?mode=ro", uri=True)  # as Datasette holds it
    handle = open(published, "rb")
    try:
        assert titles(reader) == OLD
        replace_atomically(staging, published)
        assert titles(reader) == OLD  # its open file is still the old one, whole
        assert reader.execute("pragma integrity_check").fetchone() == ("ok",)
        assert handle.read() == old_bytes
    finally:
        handle.close()
        reader.close()
    assert read_titles(published) == NEW  # while a new reader sees the new database


def test_prepare_staging_copies_the_published_database(tmp_path: Path):
    published = tmp_path / "books.db"
    make_db(published, OLD)
    before = published.read_bytes()
    staging = prepare_staging(published)
    assert staging == tmp_path / ".books.db.staging"
    assert read_titles(staging) == OLD
    assert published.read_bytes() == before  # staging never touches the published file


def test_prepare_staging_copies_what_is_committed_but_not_yet_checkpointed(tmp_path: Path):
    # In WAL mode the last commits live in books.db-wal until a checkpoint: a copy of the main
    # file alone would miss them. SQLite's backup API copies the database as readers see it.
    published = tmp_path / "books.db"
    make_db(published, OLD, journal_mode="wal")
    writer = sqlite3.connect(published)
    try:
        writer.execute("pragma wal_autocheckpoint = 0")
        with writer:
            writer.executemany("insert into books (title) values (?)", [(t,) for t in NEW])
        assert Path(f"{published}-wal").stat().st_size > 0
        staging = prepare_staging(published)
        assert read_titles(staging) == OLD + NEW
        conn = sqlite3.connect(staging)
        try:
            assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
        finally:
            conn.close()
    finally:
        writer.close()


def test_prepare_staging_replaces_a_staging_file_left_by_a_killed_crawl(tmp_path: Path):
    published = tmp_path / "books.db"
    make_db(published, OLD)
    staging_path(published).write_bytes(b"half-written by a crawl that was killed")
    assert read_titles(prepare_staging(published)) == OLD


def test_prepare_staging_without_a_published_database_starts_from_nothing(tmp_path: Path):
    published = tmp_path / "books.db"
    staging_path(published).write_bytes(b"left over")
    staging = prepare_staging(published)
    assert not staging.exists() and not published.exists()
    assert os.listdir(tmp_path) == []


def test_the_published_count_is_the_one_publication_wrote(tmp_path: Path):
    published = tmp_path / "books.db"
    make_db(published, OLD)
    assert published_book_count(published) == len(OLD)  # an older file: counted
    with sqlite3.connect(published) as conn:
        conn.execute("create table table_counts (name text primary key, count integer)")
        conn.execute("insert into table_counts values ('books', 7)")
    conn.close()
    assert published_book_count(published) == 7


def test_republish_swaps_in_a_reworked_copy(tmp_path: Path):
    published = tmp_path / "books.db"
    make_db(published, OLD)
    seen = []

    def rework(staging: Path) -> None:
        seen.append(read_titles(staging))
        with sqlite3.connect(staging) as conn:
            conn.execute("insert into books (title) values ('added')")
        conn.close()

    republish(published, rework)
    assert seen == [OLD]
    assert read_titles(published) == [*OLD, "added"]
    assert not staging_path(published).exists()


def test_a_failed_rework_leaves_the_published_file_and_no_staging(tmp_path: Path):
    published = tmp_path / "books.db"
    make_db(published, OLD)
    content = published.read_bytes()

    def rework(staging: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        republish(published, rework)
    assert published.read_bytes() == content
    assert not staging_path(published).exists()
    with crawl_lock(published):  # and the lock was released
        with pytest.raises(CrawlLocked):
            republish(published, rework)
