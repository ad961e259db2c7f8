"""End to end: the real `scrapy crawl books` process against sites served on 127.0.0.1."""

from __future__ import annotations

import csv
import hashlib
import json
import signal
import time
from pathlib import Path

import pytest
from sitebuilder import Book, build_site, product_page, sample_books
from sqlite_utils import Database
from support import FIXTURE_SITE, NO_FIXTURE_SITE, SiteServer, crawl, start_crawl


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def runs(db_path: Path) -> list[dict]:
    return list(Database(db_path)["crawl_runs"].rows_where(order_by="id"))


@pytest.fixture
def site(tmp_path):
    """A generated catalogue of 45 books (3 listing pages) served on 127.0.0.1."""
    books = sample_books()
    root = build_site(tmp_path / "site", books)
    with SiteServer(root) as server:
        server.books = books
        server.root = root
        yield server


@pytest.fixture
def db_path(tmp_path) -> Path:
    return tmp_path / "data" / "books.db"


def test_crawl_publishes_clean_books(site, db_path):
    result = crawl(site.url, db_path)
    assert result.returncode == 0, result.stderr[-2000:]
    db = Database(db_path)
    assert db["books"].count == 45
    assert db["categories"].count == 5
    assert db["price_history"].count == 45
    row = db["books"].get(3)
    assert (row["price"], row["currency"], row["rating"]) == (1234.5, "GBP", 4)
    assert db["books"].get(2)["title"] == "Café & \"Quotes\" — l'été"
    assert db["books"].get(20)["description"] is None
    one_book = db.execute("select count(*) from books where category_id = 50").fetchone()[0]
    assert one_book == 1
    assert row["product_url"] == site.url + "catalogue/book-number-3_3/index.html"
    assert row["image_url"].startswith(site.url)
    [run] = runs(db_path)
    assert (run["status"], run["books"], run["finish_reason"]) == ("published", 45, "finished")
    assert "Progress: 45/45 books" in result.stderr
    # robots.txt + 3 listing pages + 45 product pages, each once.
    assert sum(site.requests.values()) == 49
    assert not list(db_path.parent.glob(".books.db.staging"))


def test_nothing_can_drive_the_crawl_from_outside(site, db_path, tmp_path):
    """Scrapy 2.19 starts a remote-control server that runs code sent to it, unless told not to."""
    home = tmp_path / "home"
    home.mkdir()
    result = crawl(site.url, db_path, env={"HOME": str(home), "XDG_STATE_HOME": str(home / "state")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Remote control" not in result.stderr
    assert "Telnet console listening" not in result.stderr
    assert "scrapy.extensions.remote_control.RemoteControl" not in result.stderr
    assert not [path for path in home.rglob("*") if path.is_file()], "the crawl left files in HOME"


def test_export_has_exactly_the_record_fields(site, db_path, tmp_path):
    out = tmp_path / "books.csv"
    result = crawl(site.url, db_path, "-O", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    with out.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 45
    assert list(rows[0]) == [
        "id", "upc", "title", "price", "price_incl_tax", "tax", "currency", "rating", "availability",
        "in_stock", "stock_count", "category", "description", "product_type", "number_of_reviews",
        "image_url", "product_url", "scraped_at",
    ]
    by_id = {row["id"]: row for row in rows}
    assert (by_id["3"]["price"], by_id["3"]["category"]) == ("1234.5", "Art")


def test_server_error_then_success_is_retried_and_kept(site, db_path):
    path = "/" + site.books[9].path
    site.faults[path] = [500]
    result = crawl(site.url, db_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert site.requests[path] == 2
    assert Database(db_path)["books"].get(10)["title"] == "Book number 10"


def test_missing_product_is_reported_and_the_rest_published(site, db_path):
    path = "/" + site.books[4].path
    site.faults[path] = [404]
    result = crawl(site.url, db_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Failed to fetch {site.url}{path[1:]}" in result.stderr
    db = Database(db_path)
    assert db["books"].count == 44
    assert [r["errors"] for r in runs(db_path)] == [1]


def test_malformed_pages_are_dropped_counted_and_not_published(site, db_path):
    # Two records dropped for one reason: `dropped` counts records, not reasons.
    for number in (12, 13):
        broken = Book(id=number, title=f"Book number {number}", price=None)
        (site.root / broken.path).write_text(product_page(broken), encoding="utf-8")
    result = crawl(site.url, db_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for number in (12, 13):
        assert f"Dropped {site.url}catalogue/book-number-{number}_{number}/index.html: missing price" in result.stderr
    db = Database(db_path)
    assert db["books"].count == 43
    [run] = runs(db_path)
    assert (run["dropped"], json.loads(run["drops"])) == (2, {"missing price": 2})
    [journal] = runs(db_path.with_name("operations.db"))
    assert (journal["dropped"], json.loads(journal["drops"])) == (2, {"missing price": 2})


def test_site_down_leaves_published_database_untouched(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    before = digest(db_path)
    site.__exit__()  # the site goes down
    result = crawl(site.url, db_path, RETRY_TIMES="1")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "crawl failed: crawl scraped no books: 1 page failed (connection refused: 1); check the network "
        "and the site, or set BOOKS_START_URL to a local copy of the site (README: Crawling a local copy)"
    )
    assert "Traceback" not in result.stderr  # expected network failures: one line each
    assert digest(db_path) == before
    statuses = [r["status"] for r in runs(db_path.with_name("operations.db"))]
    assert statuses == ["published", "failed"]


def test_second_crawl_is_idempotent(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    first = {r["id"]: r for r in Database(db_path)["books"].rows}
    assert crawl(site.url, db_path).returncode == 0
    db = Database(db_path)
    second = {r["id"]: r for r in db["books"].rows}
    strip = lambda rows: {k: {c: v for c, v in r.items() if c != "scraped_at"} for k, r in rows.items()}  # noqa: E731
    assert strip(second) == strip(first)
    assert db["price_history"].count == 45
    assert [r["status"] for r in runs(db_path)] == ["published", "published"]


def test_changed_price_adds_exactly_one_history_row(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    book = site.books[6]
    book.price = "£99.99"
    (site.root / book.path).write_text(product_page(book), encoding="utf-8")
    assert crawl(site.url, db_path).returncode == 0
    db = Database(db_path)
    assert db["price_history"].count == 46
    history = [(r["price"], r["run_id"]) for r in db["price_history"].rows_where("book_id = 7", order_by="id")]
    assert history == [(18.75, 1), (99.99, 2)]
    assert db["books"].get(7)["price"] == 99.99


def test_a_recrawl_publishes_a_search_index_of_the_new_text(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    renamed, unlisted = site.books[6], site.books[7]
    renamed.title, renamed.description = "Zanzibar Nights", "A voyage of the quartermaster."
    build_site(site.root, [book for book in site.books if book is not unlisted])
    assert crawl(site.url, db_path).returncode == 0
    db = Database(db_path)
    assert [r["id"] for r in db["books"].search("zanzibar")] == [renamed.id]
    assert [r["id"] for r in db["books"].search("quartermaster")] == [renamed.id]
    assert db.execute("select count(*) from books_fts").fetchone()[0] == db["books"].count == 44
    assert not list(db["books"].search(f'"{unlisted.title}"'))


def test_shrunken_catalogue_is_refused_unless_allowed(tmp_path, site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    before = digest(db_path)
    small = build_site(tmp_path / "small", sample_books(10))
    with SiteServer(small) as server:
        refused = crawl(server.url, db_path)
        assert refused.returncode != 0
        assert "fewer than half" in refused.stderr.splitlines()[-1]
        assert digest(db_path) == before
        allowed = crawl(server.url, db_path, BOOKS_ALLOW_SHRINK="1")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    db = Database(db_path)
    assert db["books"].count == 10
    assert [(r["status"], r["books"], r["removed"]) for r in runs(db_path)] == [
        ("published", 45, 0), ("published", 10, 35)
    ]


def test_books_the_site_no_longer_has_are_retired(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    unlisted, gone, failing = site.books[7], site.books[8], site.books[9]
    build_site(site.root, [book for book in site.books if book is not unlisted])
    site.faults["/" + gone.path] = [404]
    site.faults["/" + failing.path] = [500] * 4  # every retry fails: keep its last good row
    result = crawl(site.url, db_path)
    assert result.returncode == 0, result.stderr[-2000:]
    db = Database(db_path)
    ids = {row["id"] for row in db["books"].rows}
    assert ids == {book.id for book in site.books} - {unlisted.id, gone.id}
    assert not list(db["price_history"].rows_where("book_id in (?, ?)", [unlisted.id, gone.id]))
    assert runs(db_path)[-1]["removed"] == 2


def test_failed_listing_page_retires_nothing(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    site.faults["/catalogue/page-2.html"] = [500] * 4
    result = crawl(site.url, db_path, BOOKS_ALLOW_SHRINK="1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no book is retired" in result.stderr
    assert Database(db_path)["books"].count == 45


def test_killed_crawl_leaves_published_database_intact(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    before = digest(db_path)
    site.delay = 0.2
    process = start_crawl(site.url, db_path, BOOKS_WRITE_BATCH="5")
    deadline = time.monotonic() + 60
    while sum(site.requests.values()) < 49 + 15 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    assert digest(db_path) == before
    site.delay = 0
    assert crawl(site.url, db_path).returncode == 0
    statuses = [r["status"] for r in runs(db_path.with_name("operations.db"))]
    assert statuses == ["published", "abandoned", "published"]


@pytest.mark.fixture_site
@pytest.mark.skipif(not FIXTURE_SITE.is_dir(), reason=NO_FIXTURE_SITE)
def test_real_site_copy(tmp_path):
    db_path = tmp_path / "books.db"
    with SiteServer(FIXTURE_SITE) as server:
        result = crawl(server.url, db_path)
        requests = sum(server.requests.values())
    assert result.returncode == 0, result.stderr[-2000:]
    assert requests <= 1051
    db = Database(db_path)
    one = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    assert one("select count(*) from books") == 1000
    assert one("select count(distinct upc) from books") == 1000
    assert one("select count(*) from categories") == 50
    assert one("select round(sum(price), 2) from books") == 35070.35
    assert dict(db.execute("select rating, count(*) from books group by rating").fetchall()) == {
        1: 226, 2: 196, 3: 203, 4: 179, 5: 196
    }
    assert one("select sum(stock_count) from books") == 8585
    assert one("select count(*) from books where description is null") == 2
    assert "Progress: 1000/1000 books" in result.stderr


def test_concurrent_crawl_is_refused(site, db_path):
    import fcntl

    db_path.parent.mkdir(parents=True)
    with open(db_path.with_name(".books.db.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = crawl(site.url, db_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"crawl failed: another crawl is running for {db_path}"
    assert not db_path.exists()


def test_progress_is_logged_on_a_timer_too(site, db_path):
    site.delay = 0.1
    result = crawl(site.url, db_path, CONCURRENT_REQUESTS="2", BOOKS_PROGRESS_EVERY_BOOKS="0",
                   BOOKS_PROGRESS_EVERY_SECONDS="0.5")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "Progress: " in line]
    assert len(lines) >= 3  # at least two timer ticks, then the final line
    assert lines[-1].endswith("Progress: 45/45 books")


def test_store_conflict_drops_one_record_and_publishes_the_rest(site, db_path):
    assert crawl(site.url, db_path).returncode == 0
    old = site.books[4]
    renumbered = Book(id=46, title="Book number 5 again", upc=f"upc{old.id:012d}")  # the site re-ids it
    build_site(site.root, [book for book in site.books if book is not old] + [renumbered])
    result = crawl(site.url, db_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "store conflict" in result.stderr
    db = Database(db_path)
    # The old row held the UPC while this run stored; it is retired at publication, the new one
    # arrives with the next crawl.
    assert {book.id for book in site.books} - {row["id"] for row in db["books"].rows} == {old.id}
    assert db["books"].count == 44
    last = runs(db_path)[-1]
    assert (json.loads(last["drops"]), last["removed"]) == ({"store conflict": 1}, 1)
    assert crawl(site.url, db_path).returncode == 0
    assert Database(db_path)["books"].get(46)["upc"] == f"upc{old.id:012d}"
