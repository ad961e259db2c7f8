from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from browsing import CHROMIUM, CHROMIUM_ARGS
from api_support import ENV, make_datasette
from datasette.app import Datasette
from sitebuilder import build_site, sample_books
from support import FIXTURE_SITE, SiteServer, crawl, query


@dataclass
class PublishedDatabase:
    path: Path
    operations_path: Path
    source: str  # "fixture-site" (the real site's copy) or "generated"

    def plain_title(self) -> str:
        """A title of letters, digits and spaces only, for searches that must find exactly it."""
        sql = "select title from books where title not glob '*[^A-Za-z0-9 ]*' order by id limit 1"
        return query(self.path, sql)[0]["title"]


@pytest.fixture(scope="session")
def published_db(tmp_path_factory: pytest.TempPathFactory) -> PublishedDatabase:
    """A books database published by a real crawl: of the real site's copy when it is there."""
    workdir = tmp_path_factory.mktemp("published")
    if FIXTURE_SITE.is_dir():
        root, source = FIXTURE_SITE, "fixture-site"
    else:
        root, source = build_site(workdir / "site", sample_books()), "generated"
    db_path = workdir / "books.db"
    with SiteServer(root) as server:
        result = crawl(server.url, db_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return PublishedDatabase(db_path, workdir / "operations.db", source)


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
