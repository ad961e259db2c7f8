"""Shared set-up for the /api/v1 tests: the real plugins and metadata.yml's API config, test secrets.

plugins_dir modules register once per session in Datasette's plugin manager; every test builds its own
Datasette, so only the configuration (metadata and environment) changes between tests.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml
from datasette.app import Datasette

from support import query

from books_scraper.api.auth import hash_password
from books_scraper.web.served_metadata import served_metadata
from books_scraper.web.worker import NoAggregates, inspect_data

PROJECT = Path(__file__).resolve().parents[1]
PLUGINS = PROJECT / "plugins"
METADATA = PROJECT / "metadata.yml"

PASSWORDS = {"admin": "admin-pass-1", "scientist": "scientist-pass-1", "viewer": "viewer-pass-1"}
TOKENS = {"ml": "ml-static-token-0123456789", "admin": "admin-static-token-0123456789",
          "viewer": "viewer-static-token-0123456789"}
JWT_SECRET = "test-jwt-secret-that-is-long-enough-0123456789"
# Few iterations: the hashes are test-only and the format carries its own count.
ENV = {
    "BOOKS_JWT_SECRET": JWT_SECRET,
    "BOOKS_API_TOKEN_ML": TOKENS["ml"],
    "BOOKS_API_TOKEN_ADMIN": TOKENS["admin"],
    "BOOKS_API_TEST_VIEWER_TOKEN": TOKENS["viewer"],
    "BOOKS_API_ADMIN_PASSWORD_HASH": hash_password(PASSWORDS["admin"], iterations=1000),
    "BOOKS_API_SCIENTIST_PASSWORD_HASH": hash_password(PASSWORDS["scientist"], iterations=1000),
    "BOOKS_API_TEST_VIEWER_PASSWORD_HASH": hash_password(PASSWORDS["viewer"], iterations=1000),
}


def api_metadata() -> dict:
    """metadata.yml's own API blocks, plus a role-less 'viewer' user and token for 403 cases."""
    plugins = yaml.safe_load(METADATA.read_text())["plugins"]
    api = copy.deepcopy(plugins["books-api"])
    api["users"].append(
        {"username": "viewer", "password_hash": {"$env": "BOOKS_API_TEST_VIEWER_PASSWORD_HASH"}, "roles": []}
    )
    tokens = copy.deepcopy(plugins["datasette-auth-tokens"])
    tokens["tokens"].append(
        {"token": {"$env": "BOOKS_API_TEST_VIEWER_TOKEN"}, "actor": {"id": "viewer-service", "roles": []}}
    )
    return {"plugins": {"books-api": api, "datasette-auth-tokens": tokens}}


def stored_inspect_data(books_db: Path) -> dict | None:
    """The inspect data a publication stored, or None for a file without aggregates (which the
    worker refuses; tests of how the API answers such a file let Datasette count its tables)."""
    try:
        return inspect_data(books_db)
    except NoAggregates:
        return None


def make_datasette(published, metadata: dict | None = None, settings: dict | None = None) -> Datasette:
    """Datasette as the worker starts it: the books file immutable, with the inspect data its
    publication stored (so no table is counted at startup, under whatever time limit a test sets)."""
    return Datasette(
        files=[str(published.operations_path)],
        immutables=[str(published.path)],
        inspect_data=stored_inspect_data(Path(published.path)),
        metadata=served_metadata(os.environ, metadata or api_metadata()),
        plugins_dir=str(PLUGINS),
        settings=settings,
    )


def value(path: Path, sql: str, params=()):
    return next(iter(query(path, sql, params)[0].values()))


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one envelope: JSON, never HTML, with the status repeated in the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["ok"] is False and body["status"] == status and body["error"]
    if code is not None:
        assert body["error_code"] == code, body
    return body


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}
