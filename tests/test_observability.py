"""Observability: request logs (text or JSON), X-Request-Id, GET /-/metrics, GET /api/v1/ready
(books_scraper/logs.py, books_scraper/web/observability.py, books_scraper/web/metrics.py)."""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from api_support import ENV, PASSWORDS, PLUGINS, TOKENS, api_metadata, assert_error, bearer, make_datasette
from conftest import PublishedDatabase
from datasette.app import Datasette
from prometheus_client.parser import text_string_to_metric_families
from scrapy.settings import Settings
from serving import ServeProcess
from sitebuilder import build_site, sample_books
from support import SiteServer, crawl, query

from books_scraper.logs import configure_crawl_logging

WRONG_PASSWORD = "wrong-password-that-must-never-be-logged-0451"


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus exposition: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


async def scrape(ds: Datasette, headers: dict | None = None) -> dict:
    response = await ds.client.get("/-/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


# --- request ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent,echoed",
    [
        pytest.param("abc-123.DEF_4", True, id="a-well-formed-id-is-echoed"),
        pytest.param("x" * 64, True, id="64-characters-are-echoed"),
        pytest.param("x" * 65, False, id="65-characters-are-replaced"),
        pytest.param("has space", False, id="a-space-is-replaced"),
        pytest.param("a/b", False, id="a-slash-is-replaced"),
        pytest.param("", False, id="an-empty-id-is-replaced"),
        pytest.param(None, False, id="no-id-gets-one"),
    ],
)
async def test_request_id_is_echoed_when_well_formed_and_generated_otherwise(api, sent, echoed):
    headers = {"X-Request-Id": sent} if sent is not None else {}
    for path in ("/api/v1/health", "/books/books.json?_size=1", "/no/such/page/here"):
        response = await api.client.get(path, headers=headers)
        returned = response.headers["x-request-id"]
        if echoed:
            assert returned == sent
        else:
            assert returned != sent and 1 <= len(returned) <= 64 and returned.isalnum()


# --- metrics -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path,status,route",
    [
        pytest.param("/api/v1/books/{id}", 200, "/api/v1/books/{id}", id="an-api-route-by-its-template"),
        pytest.param("/api/v1/books?limit=1", 200, "/api/v1/books", id="no-query-string-in-the-label"),
        pytest.param("/books/books.json?_size=1", 200, "/{database}/{table}.json", id="a-table-as-json"),
        pytest.param("/books/books", 200, "/{database}/{table}", id="a-table-page"),
        pytest.param("/books", 200, "/{database}", id="a-database-page"),
        pytest.param("/-/metadata.json", 200, "/-/metadata.json", id="a-datasette-page-as-json"),
        pytest.param("/-/static/app.css", 200, "/-/static/{path}", id="a-static-file"),
        pytest.param("/books/no_such_table_xyz", 404, "(not found)", id="a-404-is-one-label"),
        pytest.param("/api/v1/books/999999999", 404, "(not found)", id="an-api-404-too"),
    ],
)
async def test_requests_are_counted_by_route_template_never_the_raw_path(api, published_db, path, status, route):
    book_id = query(published_db.path, "select id from books order by id limit 1")[0]["id"]
    path = path.replace("{id}", str(book_id))
    before = await scrape(api)
    for _ in range(2):
        assert (await api.client.get(path)).status_code == status
    response = await api.client.get("/-/metrics")
    after = samples(response.text)
    labels = {"route": route, "method": "GET", "status": str(status)}
    assert value(after, "books_http_requests_total", **labels) - value(before, "books_http_requests_total", **labels) == 2
    count = "books_http_request_duration_seconds_count"
    assert value(after, count, route=route) - value(before, count, route=route) == 2
    assert "no_such_table_xyz" not in response.text and "999999999" not in response.text


async def test_an_unknown_method_is_one_label(api):
    await api.client.request("PROPFIND", "/books")
    scraped = await scrape(api)
    methods = {dict(labels)["method"] for name, labels in scraped if name == "books_http_requests_total"}
    assert "PROPFIND" not in methods and "other" in methods


async def test_the_last_published_crawl_is_described(api, published_db):
    run = query(
        published_db.path, "select * from crawl_runs where status = 'published' order by id desc limit 1"
    )[0]
    scraped = await scrape(api)
    assert value(scraped, "books_last_crawl_run_id") == run["id"]
    assert value(scraped, "books_last_crawl_books") == run["books"]
    assert value(scraped, "books_last_crawl_pages") == run["pages"]
    assert 0 <= value(scraped, "books_last_crawl_duration_seconds") < 600
    assert value(scraped, "books_last_crawl_success_timestamp_seconds") > 1.7e9
    for reason, count in json.loads(run["drops"] or "{}").items():
        assert value(scraped, "books_last_crawl_drops", reason=reason) == count


@pytest.fixture
def bare_operations(published_db, tmp_path, api_env) -> tuple[Datasette, Path]:
    """The published books beside an operations database with only the columns the metrics read,
    whatever the jobs' and predictions' full schemas are."""
    ops = tmp_path / "operations.db"
    with sqlite3.connect(ops) as conn:
        conn.execute("create table predictions (id integer primary key, model text)")
        conn.execute("create table scrape_jobs (id integer primary key, status text)")
    return make_datasette(PublishedDatabase(published_db.path, ops, published_db.source)), ops


async def test_predictions_and_jobs_are_counted_from_the_operations_database(bare_operations):
    ds, ops = bare_operations
    scraped = await scrape(ds)
    assert not [name for name, _ in scraped if name in ("books_predictions_stored", "books_scrape_jobs")]
    with sqlite3.connect(ops) as conn:
        conn.executemany("insert into predictions (model) values (?)", [("linear",)] * 3 + [("tree",)])
        conn.executemany("insert into scrape_jobs (status) values (?)", [("succeeded",), ("succeeded",), ("running",)])
    scraped = await scrape(ds)
    assert value(scraped, "books_predictions_stored", model="linear") == 3
    assert value(scraped, "books_predictions_stored", model="tree") == 1
    assert value(scraped, "books_scrape_jobs", status="succeeded") == 2
    assert value(scraped, "books_scrape_jobs", status="running") == 1


async def test_posted_predictions_move_the_gauge(writable_api, published_db):
    ds, _ = writable_api
    ids = [row["id"] for row in query(published_db.path, "select id from books order by id limit 3")]
    before = value(await scrape(ds), "books_predictions_stored", model="metrics-check")
    batch = {"model": "metrics-check", "predictions": [{"id": i, "predicted_rating": 3} for i in ids]}
    response = await ds.client.post("/api/v1/ml/predictions", json=batch, headers=bearer(TOKENS["ml"]))
    assert response.status_code == 201, response.text
    assert value(await scrape(ds), "books_predictions_stored", model="metrics-check") == before + 3


@pytest.mark.parametrize(
    "who,status",
    [
        pytest.param(None, 401, id="anonymous-is-asked-for-credentials"),
        pytest.param("ml", 403, id="a-token-without-the-role-is-refused"),
        pytest.param("admin", 200, id="the-role-reads-them"),
    ],
)
async def test_who_may_read_the_metrics_is_configuration(published_db, api_env, who, status):
    metadata = api_metadata()
    metadata["plugins"]["books-api"]["permissions"]["books-api-metrics"] = {"roles": ["admin"]}
    ds = make_datasette(published_db, metadata)
    response = await ds.client.get("/-/metrics", headers=bearer(TOKENS[who]) if who else None)
    if status == 200:
        assert response.status_code == 200 and "books_http_requests_total" in response.text
    else:
        assert_error(response, status)


async def test_metrics_are_public_as_metadata_yml_ships(api):
    assert (await api.client.get("/-/metrics")).status_code == 200
    assert_error(await api.client.post("/-/metrics"), 405)


# --- readiness -----------------------------------------------------------------------------------


async def test_ready_once_a_books_database_is_published(api, published_db):
    response = await api.client.get("/api/v1/ready")
    assert response.status_code == 200
    books = query(published_db.path, "select count(*) as n from books")[0]["n"]
    assert response.json() == {"status": "ready", "books": books}


@pytest.mark.parametrize("books_db", ["missing", "empty"])
async def test_not_ready_without_a_published_books_database(published_db, tmp_path, api_env, books_db):
    files = [str(published_db.operations_path)]
    if books_db == "empty":  # served, but no crawl ever published into it
        sqlite3.connect(tmp_path / "books.db").close()
        files.append(str(tmp_path / "books.db"))
    ds = Datasette(files=files, plugins_dir=str(PLUGINS), metadata=api_metadata())
    assert_error(await ds.client.get("/api/v1/ready"), 503, "not_ready")


# --- crawler logs --------------------------------------------------------------------------------


def test_crawl_logs_one_json_object_per_line(tmp_path):
    site = build_site(tmp_path / "site", sample_books(12))
    with SiteServer(site) as server:
        result = crawl(server.url, tmp_path / "books.db", env={"BOOKS_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert lines[0]["message"].startswith("Scrapy ")  # from Scrapy's first line on
    assert any(line["message"].startswith("Publication") or "publish" in line["message"].lower() for line in lines)


@pytest.mark.parametrize("kind", ["json", "text"])
def test_a_jobs_crawl_carries_its_job_id_in_every_line(kind, capsys):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_crawl_logging(Settings({"BOOKS_LOG_FORMAT": kind, "BOOKS_JOB_ID": "17", "LOG_LEVEL": "INFO"}))
        logging.getLogger("books_scraper.test").info("Progress: %d/%d books", 3, 10)
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    if kind == "json":
        record = json.loads(line)
        assert record["job_id"] == 17 and record["message"] == "Progress: 3/10 books"
    else:
        assert "job_id=17 Progress: 3/10 books" in line


# --- the real server's log -----------------------------------------------------------------------


def call(url: str, method: str = "GET", body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, dict(error.headers)


@pytest.fixture(scope="module")
def json_log(published_db, tmp_path_factory) -> tuple[list[dict], str]:
    """The server's whole log (BOOKS_LOG_FORMAT=json) after a token request, a failed login and a
    Datasette page: (its lines as JSON, its raw text)."""
    log = tmp_path_factory.mktemp("observability") / "serve.log"
    server = ServeProcess(published_db.path, published_db.operations_path, log, BOOKS_LOG_FORMAT="json", **ENV)
    with server:
        base = server.url.rstrip("/")
        assert call(f"{base}/api/v1/books?limit=1", headers={
            **bearer(TOKENS["ml"]), "X-Request-Id": "trace-with-token"})[0] == 200
        status, headers = call(f"{base}/api/v1/auth/login", "POST", {"username": "admin", "password": WRONG_PASSWORD},
                               {"X-Request-Id": "trace-failed-login"})
        assert status == 401 and headers["x-request-id"] == "trace-failed-login"
        assert call(f"{base}/api/v1/auth/login", "POST", {"username": "scientist", "password": PASSWORDS["scientist"]})[0] == 200
        assert call(f"{base}/books/books.json?_size=1", headers={"X-Request-Id": "not well formed!"})[0] == 200
        # Datasette writes these to stderr itself: a failed query, an unknown facet's warnings.
        assert call(f"{base}/books.json?sql=select+*+from+nope")[0] == 400
        assert call(f"{base}/books/books.json?_facet=nope")[0] == 400
    text = log.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()], text


def test_every_server_line_is_json_with_time_level_and_message(json_log):
    lines, _ = json_log
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["message"].startswith("serving on http://") for line in lines)  # the launcher's own
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # and uvicorn's startup
    assert not any(line["logger"] == "uvicorn.access" for line in lines)  # its access log is off
    assert not any("color_message" in line for line in lines)


def test_what_datasette_writes_to_stderr_itself_is_json_too(json_log):
    stray = [line for line in json_log[0] if line["logger"] == "stderr"]
    assert any("no such table: nope" in line["message"] for line in stray)


def test_each_request_is_one_line_with_its_facts(json_log):
    requests = [line for line in json_log[0] if line["logger"] == "books_scraper.requests"]
    by_id = {line["request_id"]: line for line in requests}
    line = by_id["trace-with-token"]
    assert line["method"] == "GET" and line["route"] == "/api/v1/books" and line["status"] == 200
    assert line["actor_id"] == "ml-service" and line["bytes"] > 0 and line["duration_ms"] >= 0
    assert by_id["trace-failed-login"]["status"] == 401 and by_id["trace-failed-login"]["actor_id"] is None
    table = [line for line in requests if line["route"] == "/{database}/{table}.json" and line["status"] == 200]
    assert len(table) == 1 and table[0]["request_id"] != "not well formed!"


def test_a_failed_login_is_logged_with_the_user_name_and_request_id(json_log):
    failed = [line for line in json_log[0] if "failed login" in line["message"]]
    assert len(failed) == 1
    assert failed[0]["username"] == "admin" and failed[0]["request_id"] == "trace-failed-login"
    assert failed[0]["level"] == "WARNING"


def test_no_token_or_password_reaches_the_log(json_log):
    _, text = json_log
    for secret in (TOKENS["ml"], WRONG_PASSWORD, PASSWORDS["scientist"], ENV["BOOKS_JWT_SECRET"]):
        assert secret not in text
    assert "Bearer" not in text and "authorization" not in text.lower()
