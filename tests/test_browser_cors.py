"""CORS in a real headless Chromium, against the real `python -m books_scraper.serve`: a page served
from another origin (another port on 127.0.0.1) calls the API with fetch(). The origin listed in
`cors: origins:` gets through the preflight and reads the answers; another origin is refused by the
browser itself."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import yaml
from serving import ServeProcess, free_port, load_metadata
from support import query
from browsing import BROWSER_TEST, TIMEOUT_MS

from books_scraper.api.auth import hash_password

PASSWORD = "cors-admin-pass-1"
JWT_SECRET = "cors-test-jwt-secret-that-is-long-enough-0123456789"

pytestmark = BROWSER_TEST

# Logs in (a JSON POST: preflighted), then reads with the token (Authorization: preflighted again).
CALL_THE_API = """async (api) => {
  try {
    const login = await fetch(api + "/api/v1/auth/login", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({username: "admin", password: "%s"}),
    });
    const tokens = await login.json();
    const stats = await fetch(api + "/api/v1/stats/overview",
                              {headers: {"Authorization": "Bearer " + tokens.access_token}});
    return {login: login.status, stats: stats.status, overview: await stats.json(),
            requestId: stats.headers.get("X-Request-Id")};
  } catch (error) {
    return {error: String(error)};
  }
}""" % PASSWORD


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def origins(tmp_path_factory):
    """Two static sites on 127.0.0.1, each an origin of its own: (allowed, other)."""
    root = tmp_path_factory.mktemp("origin")
    (root / "index.html").write_text("<!doctype html><title>a page on another origin</title>")
    servers = []
    for _ in range(2):
        handler = functools.partial(Quiet, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield tuple(f"http://127.0.0.1:{server.server_port}" for server in servers)
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(published_db, tmp_path_factory, origins):
    """The server, with the first origin listed in metadata.yml's cors.origins."""
    work = tmp_path_factory.mktemp("serve-cors")
    metadata = load_metadata()
    metadata["plugins"]["books-api"]["cors"] = {"origins": [origins[0]]}
    path = work / "metadata.yml"
    path.write_text(yaml.safe_dump(metadata, allow_unicode=True))
    env = {"BOOKS_JWT_SECRET": JWT_SECRET, "BOOKS_API_ADMIN_PASSWORD_HASH": hash_password(PASSWORD, iterations=1000)}
    server = ServeProcess(published_db.path, published_db.operations_path, work / "serve.log", **env)
    server.command += ["--metadata", str(path)]
    with server:
        yield server


def call_from(browser, origin: str, api: str) -> tuple[dict, list[str]]:
    """What the page on `origin` got from the API, and the browser's console messages."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        page.goto(origin + "/index.html")
        return page.evaluate(CALL_THE_API, api), console
    finally:
        context.close()


def test_a_listed_origin_logs_in_and_reads_across_origins(browser, served, origins, published_db):
    api = served.url.rstrip("/")
    answer, console = call_from(browser, origins[0], api)
    assert "error" not in answer, (answer, console)
    assert answer["login"] == 200 and answer["stats"] == 200
    total = query(published_db.path, "select count(*) as n from books")[0]["n"]
    assert answer["overview"]["total_books"] == total
    assert answer["requestId"]  # an exposed header the page may read
    # The browser asked first: a JSON POST and an Authorization header both need a preflight.
    assert "OPTIONS /api/v1/auth/login" in served.output()
    assert "OPTIONS /api/v1/stats/overview" in served.output()


def test_another_origin_is_refused_by_the_browser(browser, served, origins):
    api = served.url.rstrip("/")
    answer, console = call_from(browser, origins[1], api)
    assert answer == {"error": "TypeError: Failed to fetch"}
    assert any("CORS policy" in message for message in console), console
