from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from browsing import CHROMIUM, CHROMIUM_ARGS
from api_support import ENV, make_datasette
from datasette.app import Datasette
from sitebuilder import build_site, sample_books
from support import FIXTURE_SITE, SiteServer, crawl, query


# The files that take longest (real crawls, server processes, reloads), longest first. Under
# pytest-xdist each worker takes whole files in this order: a long file handed out last would leave
# one worker running it alone at the end. The rest follow in their usual order.
LONGEST_FIRST = [
    "test_crawl.py", "test_reload.py", "test_publication.py", "test_aggregates.py", "test_crawl_faults.py",
    "test_bench_scale.py", "test_jobs.py", "test_api_ml_streams.py", "test_schemathesis.py",
    "test_operations_e2e.py", "test_observability.py", "test_serve.py", "test_datasette_fuzz.py",
    "test_api_books.py", "test_browser.py", "test_api_reference.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order kept


@dataclass
class PublishedDatabase:
    path: Path
    operations_path: Path
    source: str  # "fixture-site" (the real site's copy) or "generated"

    def plain_title(self) -> str:
        """A title of letters, digits and spaces only, for searches that must find exactly it."""
        sql = "select title from books where title not glob '*[^A-Za-z0-9 ]*' order by id limit 1"
        return query(self.path, sql)[0]["title"]


def crawl_once(workdir: Path) -> str:
    """Publish workdir/books.db by a real crawl, of the real site's copy when it is there: its source."""
    if FIXTURE_SITE.is_dir():
        root, source = FIXTURE_SITE, "fixture-site"
    else:
        root, source = build_site(workdir / "site", sample_books()), "generated"
    with SiteServer(root) as server:
        result = crawl(server.url, workdir / "books.db")
    assert result.returncode == 0, result.stderr[-3000:]
    return source


@pytest.fixture(scope="session")
def published_db(tmp_path_factory: pytest.TempPathFactory) -> PublishedDatabase:
    """A books database published by a real crawl: of the real site's copy when it is there.
    Under pytest-xdist the crawl runs once for the whole run (the first worker to get here, the others
    waiting on a lock) and each worker serves its own copy: servers of two workers never share a file."""
    workdir = tmp_path_factory.mktemp("published")
    if "PYTEST_XDIST_WORKER" not in os.environ:
        source = crawl_once(workdir)
    else:
        shared = tmp_path_factory.getbasetemp().parent / "published"  # the run's root, above each worker's
        with open(shared.with_name("published.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (shared / "source").exists():
                shared.mkdir(exist_ok=True)
                (shared / "source").write_text(crawl_once(shared))
        source = (shared / "source").read_text()
        for name in ("books.db", "operations.db"):
            shutil.copyfile(shared / name, workdir / name)
    return PublishedDatabase(workdir / "books.db", workdir / "operations.db", source)


@pytest.fixture
def published_copy(published_db: PublishedDatabase, tmp_path: Path) -> PublishedDatabase:
    """A private copy of the published databases, for tests that write."""
    db = tmp_path / "books.db"
    shutil.copyfile(published_db.path, db)
    ops = tmp_path / "operations.db"
    shutil.copyfile(published_db.operations_path, ops)
    return PublishedDatabase(db, ops, published_db.source)


@pytest.fixture
def api_env(monkeypatch):
    for name, secret in ENV.items():
        monkeypatch.setenv(name, secret)
    return ENV


@pytest.fixture
def api(published_db, api_env) -> Datasette:
    """Datasette over the session's published databases (read-only tests)."""
    return make_datasette(published_db)


@pytest.fixture
def writable_api(published_copy, api_env) -> tuple[Datasette, PublishedDatabase]:
    """Datasette over a private copy, for tests that post predictions."""
    return make_datasette(published_copy), published_copy


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for a module's browser tests (tests/browsing.py); per module, so Playwright's
    own event loop is never alive while pytest-asyncio runs another module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
