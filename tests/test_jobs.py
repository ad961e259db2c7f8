"""Scraping jobs end to end: /api/v1/scraping/* on the in-process Datasette, each job the real
`scrapy crawl books` process crawling a small generated site on 127.0.0.1 and reporting to the
operations database itself; lost jobs, cancels, and the schedule (BOOKS_CRAWL_EVERY)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
from api_support import TOKENS, assert_error, bearer, make_datasette
from conftest import PublishedDatabase
from openapi_schema_validator import OAS30Validator
from openapi_schema_validator import validate as validate_body
from serving import free_port
from sitebuilder import sample_books
from sqlite_utils import Database
from support import SiteServer, publish_generated_site, query

from books_scraper import crawlstats, jobs, operations
from books_scraper.api import scraping
from books_scraper.publication import STOPPED
from books_scraper.publish import staging_path
from books_scraper.web.served_metadata import load_metadata

ADMIN = bearer(TOKENS["admin"])
JOBS = "/api/v1/scraping/jobs"
BOOKS = 30


@dataclass
class Site:
    server: SiteServer
    root: Path


@pytest.fixture(scope="module")
def first_publication(tmp_path_factory) -> tuple[Path, PublishedDatabase]:
    """A small site and the databases its first crawl published (each test takes copies)."""
    root, books_db = publish_generated_site(tmp_path_factory.mktemp("jobs"), BOOKS)
    return root, PublishedDatabase(books_db, books_db.with_name("operations.db"), "generated")


@pytest.fixture
def published(first_publication, tmp_path, api_env):
    _, first = first_publication
    copy = PublishedDatabase(tmp_path / "books.db", tmp_path / "operations.db", first.source)
    shutil.copyfile(first.path, copy.path)
    shutil.copyfile(first.operations_path, copy.operations_path)
    yield copy
    # No crawl outlives its test, whatever the test left behind.
    for row in query(copy.operations_path, "select id, pid from scrape_jobs where pid is not null"):
        if row["pid"] != os.getpgrp() and jobs.process_alive(row["pid"], row["id"]):
            os.killpg(row["pid"], signal.SIGKILL)


@pytest.fixture
def site(first_publication, tmp_path, monkeypatch):
    """This test's copy of the site (free to change) on 127.0.0.1, and BOOKS_START_URL naming it."""
    source, _ = first_publication
    root = shutil.copytree(source, tmp_path / "site")
    with SiteServer(root) as server:
        monkeypatch.setenv("BOOKS_START_URL", server.url)
        yield Site(server, root)


@pytest.fixture
def ds(published):
    datasette = make_datasette(published)
    yield datasette
    scraping.stop_schedule(datasette)


async def get_job(ds, job_id: int) -> dict:
    response = await ds.client.get(f"{JOBS}/{job_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()


async def wait_for(ds, job_id: int, done, timeout: float = 30) -> dict:
    """Poll the job until done(job) holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = await get_job(ds, job_id)
        if done(job):
            return job
        assert loop.time() < deadline, job
        await asyncio.sleep(0.1)


def ended(job: dict) -> bool:
    return job["status"] not in operations.ACTIVE


def running(job: dict) -> bool:
    return job["status"] == "running"


async def start(ds, path: str = JOBS) -> dict:
    response = await ds.client.post(path, headers=ADMIN)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"{JOBS}/{job['id']}" == job["url"]
    return job


async def job_schema(ds) -> dict:
    document = (await ds.client.get("/api/v1/openapi.json")).json()
    return {**document["components"]["schemas"]["ScrapeJob"], "components": document["components"]}


def jobs_table(published) -> list[dict]:
    return query(published.operations_path, "select * from scrape_jobs order by id")


async def test_a_triggered_job_reports_progress_then_publishes_the_new_catalogue(ds, published, site):
    book = sample_books(BOOKS)[4]
    product = site.root / book.path  # a new price on the site since the first crawl
    product.write_text(product.read_text(encoding="utf-8").replace(book.price, "£77.77"), encoding="utf-8")
    site.server.delay = 0.5  # slow, until a progress report is seen
    queued = await start(ds)
    assert queued["status"] == "queued" and queued["trigger"] == "api" and queued["actor"] == "admin-service"
    assert queued["published"] is False and queued["progress"] is None and queued["start_url"] == site.server.url

    under_way = await wait_for(ds, queued["id"], lambda job: running(job) and job["progress"])
    assert under_way["started_at"] and under_way["finished_at"] is None
    assert under_way["progress"]["expected"] == BOOKS and under_way["progress"]["pages"] >= 1
    site.server.delay = 0
    done = await wait_for(ds, queued["id"], ended)

    assert done["status"] == "succeeded", done
    assert done["published"] is True and done["books"] == BOOKS and done["reason"] is None
    assert done["progress"]["books"] == BOOKS and done["finished_at"] >= done["started_at"]
    assert query(published.path, "select price from books where id = ?", [book.id])[0]["price"] == 77.77
    run = query(published.operations_path, "select status from crawl_runs where id = ?", [done["crawl_run_id"]])
    assert run == [{"status": "published"}]
    schema = await job_schema(ds)
    for job in (queued, under_way, done):
        validate_body(job, schema, cls=OAS30Validator)
    listed = (await ds.client.get(JOBS, headers=ADMIN)).json()
    assert [job["id"] for job in listed["jobs"]] == [done["id"]] and listed["total"] == 1
    assert (await ds.client.get("/api/v1/scraping/status", headers=ADMIN)).json() == done


async def test_a_server_on_a_pinned_link_has_its_jobs_publish_the_real_file(published, site, monkeypatch):
    """A live-reload worker serves a hard link to one version; BOOKS_DB_PATH names the published file."""
    pinned = published.path.parent / ".books.db.served-1" / "books.db"
    pinned.parent.mkdir()
    os.link(published.path, pinned)
    monkeypatch.setenv("BOOKS_DB_PATH", str(published.path))
    monkeypatch.setenv("BOOKS_OPS_DB_PATH", str(published.operations_path))
    worker = make_datasette(PublishedDatabase(pinned, published.operations_path, published.source))
    before = pinned.read_bytes()
    done = await wait_for(worker, (await start(worker))["id"], ended)
    assert done["status"] == "succeeded", done
    assert pinned.read_bytes() == before and not pinned.samefile(published.path)
    assert query(published.path, "select count(*) as n from crawl_runs where status = 'published'")[0]["n"] == 2
    assert not staging_path(pinned).exists() and not pinned.with_name(".books.db.lock").exists()


async def test_a_second_trigger_while_a_job_runs_is_409_naming_it(ds, published, site):
    site.server.delay = 0.5
    first = await start(ds)
    response = await ds.client.post("/api/v1/scraping/trigger", headers=ADMIN)
    body = assert_error(response, 409, "job_running")
    assert body["details"]["job_id"] == first["id"]
    assert response.headers["location"] == first["url"]
    assert [job["id"] for job in jobs_table(published)] == [first["id"]]


async def test_two_servers_posting_at_once_start_one_job(published, site):
    """Two Datasette instances over the same files (two server processes during a reload): the
    write transaction decides, not either server's memory."""
    site.server.delay = 0.5
    one, other = make_datasette(published), make_datasette(published)
    responses = await asyncio.gather(
        one.client.post(JOBS, headers=ADMIN), other.client.post("/api/v1/scraping/trigger", headers=ADMIN)
    )
    assert sorted(r.status_code for r in responses) == [202, 409]
    assert len(jobs_table(published)) == 1


async def test_a_job_against_a_dead_site_fails_with_its_reason_and_publishes_nothing(
    ds, published, monkeypatch
):
    monkeypatch.setenv("BOOKS_START_URL", f"http://127.0.0.1:{free_port()}/")
    before = published.path.read_bytes()
    done = await wait_for(ds, (await start(ds))["id"], ended)
    assert done["status"] == "failed" and done["published"] is False and done["books"] is None
    assert done["reason"].startswith("crawl scraped no books: 1 page failed (connection refused: 1);")
    assert done["progress"]["failed_pages"], done["progress"]
    assert published.path.read_bytes() == before
    assert not staging_path(published.path).exists()


async def test_a_cancelled_job_stops_and_leaves_the_published_file_as_it_was(ds, published, site):
    before = published.path.read_bytes()
    site.server.delay = 0.5
    job = await wait_for(ds, (await start(ds))["id"], running)
    response = await ds.client.delete(job["url"], headers=ADMIN)
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True
    done = await wait_for(ds, job["id"], ended)
    assert done["status"] == "cancelled", done
    # The crawl stopped gracefully and said so itself (not closed as lost by the server).
    assert done["reason"] == "cancelled on request; the published database was left as it was"
    assert done["published"] is False and done["books"] is None
    # The journal says so too: an operator reading crawl_runs sees a cancel, not a broken crawl.
    run = query(published.operations_path, "select status, message, finished_at from crawl_runs where id = ?", [done["crawl_run_id"]])
    assert run == [{"status": "cancelled", "message": done["reason"], "finished_at": run[0]["finished_at"]}]
    assert run[0]["finished_at"]
    health = (await ds.client.get("/api/v1/health")).json()
    assert health["latest_crawl_attempt"]["status"] == "cancelled"
    assert health["last_crawl"]["status"] == "published" and health["last_crawl"]["id"] != done["crawl_run_id"]
    assert published.path.read_bytes() == before
    assert not staging_path(published.path).exists()
    assert_error(await ds.client.delete(job["url"], headers=ADMIN), 409, "job_finished")
    await process_ended(published, job["id"])


async def test_a_job_whose_crawl_is_stopped_by_a_signal_is_cancelled_saying_so(ds, published, site):
    """Not through the API: an operator's `kill` of the crawl process. No cancel was asked, yet the
    crawl stopped on purpose, not broken: the job and its journal entry say it was a signal."""
    before = published.path.read_bytes()
    site.server.delay = 0.5
    job = await wait_for(ds, (await start(ds))["id"], running)
    os.kill(job_row(published, job["id"])["pid"], signal.SIGTERM)
    done = await wait_for(ds, job["id"], ended)
    assert (done["status"], done["reason"], done["cancel_requested"]) == ("cancelled", STOPPED, False), done
    assert done["published"] is False and done["books"] is None
    run = query(published.operations_path, "select status, message, finish_reason from crawl_runs where id = ?", [done["crawl_run_id"]])
    assert run == [{"status": "cancelled", "message": STOPPED, "finish_reason": "shutdown"}]
    assert (await ds.client.get("/api/v1/scraping/status", headers=ADMIN)).json() == done
    health = (await ds.client.get("/api/v1/health")).json()
    assert health["latest_crawl_attempt"]["status"] == "cancelled"
    assert published.path.read_bytes() == before
    assert not staging_path(published.path).exists()
    await process_ended(published, job["id"])


def job_row(published, job_id: int) -> dict:
    return query(published.operations_path, "select * from scrape_jobs where id = ?", [job_id])[0]


async def process_ended(published, job_id: int, timeout: float = 10) -> None:
    pid = query(published.operations_path, "select pid from scrape_jobs where id = ?", [job_id])[0]["pid"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while jobs.process_alive(pid, job_id):
        assert loop.time() < deadline, f"the crawl process {pid} still runs"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize(
    "method,path",
    [
        pytest.param("POST", JOBS, id="start-a-job"),
        pytest.param("POST", "/api/v1/scraping/trigger", id="trigger"),
        pytest.param("GET", JOBS, id="list-the-jobs"),
        pytest.param("GET", f"{JOBS}/1", id="read-a-job"),
        pytest.param("DELETE", f"{JOBS}/1", id="cancel-a-job"),
        pytest.param("GET", "/api/v1/scraping/status", id="read-the-status"),
    ],
)
@pytest.mark.parametrize(
    "headers,status,code",
    [
        pytest.param({}, 401, "unauthorized", id="anonymous-is-401"),
        pytest.param(bearer("not-a-token-of-ours"), 401, "unauthorized", id="an-unknown-token-is-401"),
        pytest.param(bearer(TOKENS["ml"]), 403, "forbidden", id="the-ml-token-is-403"),
        pytest.param(bearer(TOKENS["viewer"]), 403, "forbidden", id="a-role-less-token-is-403"),
    ],
)
async def test_only_the_crawl_permission_may_use_the_scraping_routes(ds, published, method, path, headers, status, code):
    response = await ds.client.request(method, path, headers=headers)
    assert_error(response, status, code)
    assert jobs_table(published) == []


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def minutes_ago(minutes: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat(timespec="seconds")


def insert_job(published, **values) -> int:
    db = Database(published.operations_path)
    try:
        row = {"created_at": minutes_ago(0), "trigger": "api", "start_url": "http://127.0.0.1:9/", **values}
        table = db[operations.SCRAPE_JOBS]
        with db.conn:
            table.insert(row)
        return table.last_pk
    finally:
        db.close()


LOST_JOBS = [
    pytest.param({"status": "running", "pid": "dead"}, "failed", id="running-with-a-dead-pid-is-failed"),
    pytest.param({"status": "running", "pid": "ours"}, "failed", id="running-with-a-pid-now-another-program-is-failed"),
    pytest.param({"status": "queued", "pid": "dead"}, "failed", id="queued-with-a-dead-pid-is-failed"),
    pytest.param({"status": "queued", "created_at": minutes_ago(5)}, "failed", id="queued-minutes-ago-never-started-is-failed"),
    pytest.param({"status": "running", "pid": "dead", "cancel_requested": 1}, "cancelled", id="a-lost-job-asked-to-cancel-is-cancelled"),
    pytest.param({"status": "queued"}, "queued", id="queued-a-moment-ago-is-left-to-start"),
    pytest.param({"status": "failed", "pid": "dead", "reason": "HTTP 503"}, "failed", id="an-ended-job-is-left-as-it-was"),
]
PIDS = {"dead": dead_pid, "ours": os.getpid}


@pytest.mark.parametrize("row,status", LOST_JOBS)
async def test_a_lost_job_is_closed_at_the_next_startup(published, row, status):
    row = {**row, **({"pid": PIDS[row["pid"]]()} if "pid" in row else {})}
    job_id = insert_job(published, **row)
    await make_datasette(published).invoke_startup()
    job = jobs_table(published)[0]
    assert job["status"] == status
    if status != row["status"]:
        assert job["finished_at"]
        assert job["reason"] == (jobs.LOST if status == "failed" else "cancelled before the crawl reported")
    else:
        assert job == {**job, **row, "id": job_id}


def insert_run(published, **values) -> int:
    db = operations.open_operations_db(str(published.operations_path))
    try:
        table = db[operations.CRAWL_RUNS]
        with db.conn:
            table.insert({"started_at": minutes_ago(1), "start_url": "http://127.0.0.1:9/", **values})
        return table.last_pk
    finally:
        db.close()


@pytest.mark.parametrize(
    "cancel_requested,run_status",
    [
        pytest.param(1, "cancelled", id="a-lost-job-asked-to-cancel-has-its-crawl-run-cancelled"),
        pytest.param(0, "running", id="a-lost-job-not-asked-leaves-its-crawl-run-for-the-next-crawl-to-abandon"),
    ],
)
async def test_a_lost_jobs_crawl_run_is_closed_as_the_job_is(published, cancel_requested, run_status):
    run_id = insert_run(published, status="running")
    insert_job(published, status="running", pid=dead_pid(), crawl_run_id=run_id, cancel_requested=cancel_requested)
    await make_datasette(published).invoke_startup()
    run = query(published.operations_path, "select status, message, finished_at from crawl_runs where id = ?", [run_id])[0]
    assert run["status"] == run_status
    assert bool(run["finished_at"]) == (run_status == "cancelled")


def test_a_published_run_is_never_marked_cancelled(published):
    run_id = insert_run(published, status="published", finished_at=minutes_ago(0))
    job_id = insert_job(published, status="running", pid=dead_pid(), cancel_requested=1)
    db = operations.open_operations_db(str(published.operations_path))
    try:
        status = operations.job_ended(
            db, job_id, published=False, books=None, reason="x", progress={}, crawl_run_id=run_id
        )
    finally:
        db.close()
    assert status == "cancelled"
    assert query(published.operations_path, "select status from crawl_runs where id = ?", [run_id]) == [{"status": "published"}]


async def test_a_job_lost_while_the_server_runs_is_failed_when_read(ds, published):
    await ds.invoke_startup()
    job_id = insert_job(published, status="running", pid=dead_pid())
    job = await get_job(ds, job_id)
    assert job["status"] == "failed" and job["reason"] == jobs.LOST
    # and it does not stand in the way of the next job
    assert (await ds.client.post(JOBS, headers=ADMIN)).status_code == 202


async def test_the_status_before_any_job_is_404_and_unknown_ids_are_404(ds):
    assert_error(await ds.client.get("/api/v1/scraping/status", headers=ADMIN), 404, "no_jobs")
    assert_error(await ds.client.get(f"{JOBS}/7", headers=ADMIN), 404, "job_not_found")
    assert_error(await ds.client.delete(f"{JOBS}/7", headers=ADMIN), 404, "job_not_found")
    listed = (await ds.client.get(JOBS, headers=ADMIN)).json()
    assert listed == {"jobs": [], "total": 0, "total_exact": True, "limit": 20, "offset": 0, "next": None}


async def test_jobs_are_listed_newest_first_page_by_page(ds, published):
    for status in ("failed", "succeeded", "cancelled"):
        insert_job(published, status=status)
    first = (await ds.client.get(f"{JOBS}?limit=2", headers=ADMIN)).json()
    assert [job["id"] for job in first["jobs"]] == [3, 2] and first["total"] == 3
    next_page = urlsplit(first["next"])
    second = (await ds.client.get(f"{next_page.path}?{next_page.query}", headers=ADMIN)).json()
    assert [job["id"] for job in second["jobs"]] == [1] and second["next"] is None


async def test_the_schedule_starts_a_job_and_never_a_second_while_it_runs(published, site, monkeypatch):
    """Two servers with the schedule on the same files (one replacing the other): one job at a time."""
    monkeypatch.setenv(jobs.INTERVAL_VARIABLE, "1s")
    site.server.delay = 0.5
    servers = [make_datasette(published), make_datasette(published)]
    try:
        for server in servers:
            await server.client.get("/api/v1/health")  # startup, then the first request starts the schedule
        await asyncio.sleep(4.5)  # four ticks of each schedule
        rows = jobs_table(published)
        assert [(row["trigger"], row["actor"]) for row in rows] == [("schedule", None)], rows
        assert rows[0]["status"] in operations.ACTIVE
    finally:
        for server in servers:
            scraping.stop_schedule(server)
    response = await servers[0].client.delete(f"{JOBS}/{rows[0]['id']}", headers=ADMIN)
    assert response.status_code in (200, 202)
    assert (await wait_for(servers[0], rows[0]["id"], ended))["status"] == "cancelled"
    await asyncio.sleep(1.5)  # a tick's worth: stopped schedules start nothing more
    assert len(jobs_table(published)) == 1


@pytest.mark.parametrize("value", ["6x", "0s", "1.5h", "-1m", "h", " 6h", "6h "])
async def test_a_bad_schedule_stops_the_server_with_one_line(published, monkeypatch, value):
    monkeypatch.setenv(jobs.INTERVAL_VARIABLE, value)
    with pytest.raises(click.ClickException) as error:
        await make_datasette(published).invoke_startup()
    assert error.value.message == f"BOOKS_CRAWL_EVERY={value!r} is not an interval such as 90s, 30m, 6h or 1d"


@pytest.mark.parametrize(
    "text,seconds",
    [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("", None), (None, None)],
    ids=["seconds", "minutes", "hours", "days", "empty-is-off", "unset-is-off"],
)
def test_intervals(text, seconds):
    interval = jobs.parse_interval(text)
    assert (interval.total_seconds() if interval else None) == seconds


def test_the_operations_dashboard_colours_every_crawl_run_status():
    """A cancelled run is charted in a colour of its own, never in a failure's."""
    charts = load_metadata()["plugins"]["datasette-dashboards"]["operations"]["charts"]
    statuses = {"running", crawlstats.PUBLISHED, crawlstats.FAILED, operations.RUN_CANCELLED, "abandoned"}
    for name in ("crawl-books", "crawl-duration"):
        scale = charts[name]["display"]["layer"][0]["encoding"]["color"]["scale"]
        assert set(scale["domain"]) == statuses, name
        colours = dict(zip(scale["domain"], scale["range"]))
        assert len(set(colours.values())) == len(statuses)
