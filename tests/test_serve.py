"""`python -m books_scraper.serve` as an operator meets it: help, bad values, a busy port, what it says."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from api_support import ENV, TOKENS
from serving import ServeProcess, free_port
from sitebuilder import build_site, sample_books
from support import PROJECT, SiteServer, query, wait_until

from books_scraper import aggregates, publish
from books_scraper.startup import bring_up_to_date, outdated
from books_scraper.web.supervisor import spawn_worker
from books_scraper.web.served_metadata import auth_summary, load_metadata, served_metadata


def serve(*args: str, **env: str) -> subprocess.CompletedProcess:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
    return subprocess.run(
        [sys.executable, "-m", "books_scraper.serve", *args], cwd=PROJECT, env={**inherited, **env},
        capture_output=True, text=True, timeout=60,
    )


def test_help_names_each_option_its_variable_and_default():
    result = serve("--help")
    assert result.returncode == 0
    for words in ["BOOKS_HOST", "BOOKS_PORT", "BOOKS_DB_PATH", "BOOKS_OPS_DB_PATH", "default: 8001",
                  "default: data/books.db", "default: 127.0.0.1"]:
        assert words in result.stdout


@pytest.mark.parametrize(
    "args,env",
    [
        pytest.param([], {"BOOKS_PORT": "abc"}, id="a-port-variable-that-is-not-a-number"),
        pytest.param(["--port", "70000"], {}, id="a-port-out-of-range"),
    ],
)
def test_a_bad_port_is_one_line_not_a_traceback(args, env, tmp_path):
    result = serve(*args, "--books-db", str(tmp_path / "books.db"), "--operations-db",
                   str(tmp_path / "operations.db"), **env)
    assert result.returncode == 2
    assert "is not a port number" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # nothing created, nothing crawled


def test_a_busy_port_is_said_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = serve("--port", str(port), "--books-db", str(tmp_path / "books.db"),
                       "--operations-db", str(tmp_path / "operations.db"),
                       BOOKS_START_URL="http://127.0.0.1:9/")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"serve: port {port} on 127.0.0.1 is already in use: stop what runs there or pass --port"
    )
    assert "serving on" not in result.stderr
    assert not (tmp_path / "books.db").exists()


@pytest.mark.parametrize(
    "change,env,line",
    [
        pytest.param({"max_bodybytes": 10}, {}, "books-api: unknown key 'max_bodybytes'", id="a-misspelt-key"),
        pytest.param({"access_token_ttl": {"$env": "BOOKS_TEST_TTL"}}, {"BOOKS_TEST_TTL": "15 minutes"},
                     "books-api: access_token_ttl must be a positive integer", id="a-bad-value-from-the-environment"),
    ],
)
def test_a_bad_api_configuration_is_one_line_before_anything_starts(change, env, line, tmp_path):
    metadata = load_metadata()
    metadata["plugins"]["books-api"].update(change)
    (tmp_path / "metadata.yml").write_text(yaml.safe_dump(metadata))
    result = serve("--metadata", str(tmp_path / "metadata.yml"), "--books-db", str(tmp_path / "books.db"),
                   "--operations-db", str(tmp_path / "operations.db"), **env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [line]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.yml"]  # nothing created, nothing crawled


def test_the_served_metadata_lists_only_the_tokens_whose_secret_is_set():
    metadata = load_metadata()
    served = served_metadata({"BOOKS_API_TOKEN_ML": "x" * 30}, metadata)
    tokens = served["plugins"]["datasette-auth-tokens"]["tokens"]
    assert tokens == [t for t in metadata["plugins"]["datasette-auth-tokens"]["tokens"]
                      if t["token"] == {"$env": "BOOKS_API_TOKEN_ML"}]
    assert len(metadata["plugins"]["datasette-auth-tokens"]["tokens"]) == 2  # the input is untouched
    assert served_metadata({}, metadata)["plugins"]["datasette-auth-tokens"]["tokens"] == []


@pytest.mark.parametrize(
    "environ,expected",
    [
        pytest.param({}, ["login off: set BOOKS_JWT_SECRET (32 bytes or more) to turn it on",
                          "static tokens on for none; off until set: BOOKS_API_TOKEN_ML, BOOKS_API_TOKEN_ADMIN"],
                     id="nothing-set"),
        pytest.param(ENV, ["login on for admin (admin), scientist (ml)",
                           "static tokens on for ml-service (ml), admin-service (admin)"], id="everything-set"),
        pytest.param({"BOOKS_JWT_SECRET": ENV["BOOKS_JWT_SECRET"],
                      "BOOKS_API_ADMIN_PASSWORD_HASH": ENV["BOOKS_API_ADMIN_PASSWORD_HASH"],
                      "BOOKS_API_TOKEN_ML": TOKENS["ml"]},
                     ["login on for admin (admin); no password hash in BOOKS_API_SCIENTIST_PASSWORD_HASH",
                      "static tokens on for ml-service (ml); off until set: BOOKS_API_TOKEN_ADMIN"],
                     id="some-set"),
    ],
)
def test_the_auth_summary_says_what_is_on_in_plain_words(environ, expected):
    assert auth_summary(environ) == expected


@pytest.mark.parametrize(
    "environ,login",
    [
        pytest.param({"BOOKS_JWT_SECRET": "short", "BOOKS_API_ADMIN_PASSWORD_HASH": "x"},
                     "login off: BOOKS_JWT_SECRET is shorter than 32 bytes", id="a-secret-too-short"),
        pytest.param({"BOOKS_JWT_SECRET": "s" * 40},
                     "login off: no user has a password hash; set BOOKS_API_ADMIN_PASSWORD_HASH, "
                     "BOOKS_API_SCIENTIST_PASSWORD_HASH", id="a-secret-but-no-user"),
    ],
)
def test_login_is_said_off_when_it_cannot_work(environ, login):
    assert auth_summary(environ)[0] == login


def test_startup_says_which_auth_is_on_and_no_secret(published_db, tmp_path):
    env = {k: v for k, v in ENV.items() if k != "BOOKS_API_TOKEN_ADMIN"}
    with ServeProcess(published_db.path, published_db.operations_path, tmp_path / "serve.log", **env) as server:
        # The admin token's variable is unset: a Bearer request is still a clean 401, not a 500.
        request = urllib.request.Request(
            server.url + "api/v1/ml/predictions", data=b"[]", method="POST",
            headers={"Authorization": "Bearer whatever", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10)
        assert answer.value.code == 401
        log = server.output()
    assert "auth: login on for admin (admin), scientist (ml)" in log
    assert "auth: static tokens on for ml-service (ml); off until set: BOOKS_API_TOKEN_ADMIN" in log
    assert not any(secret in log for secret in ENV.values())
    assert "$env" not in log


def test_a_bad_crawl_schedule_is_one_line_before_any_crawl(tmp_path):
    result = serve("--books-db", str(tmp_path / "books.db"), "--operations-db", str(tmp_path / "operations.db"),
                   BOOKS_CRAWL_EVERY="soon", BOOKS_START_URL="http://127.0.0.1:9/")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "serve: BOOKS_CRAWL_EVERY='soon' is not an interval such as 90s, 30m, 6h or 1d"
    )
    assert not list(tmp_path.iterdir())  # nothing created, nothing crawled


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_the_first_worker_starts_before_the_first_crawl_and_serves_after_it(tmp_path):
    """The worker's imports (most of a start) overlap the supervisor's work: its process exists while
    the first crawl runs, and that same process then serves what the crawl published."""
    build_site(tmp_path / "site", sample_books(3))
    with SiteServer(tmp_path / "site") as site:
        site.delay = 0.3  # a crawl of a few seconds
        server = ServeProcess(tmp_path / "data" / "books.db", tmp_path / "data" / "operations.db",
                              tmp_path / "serve.log", BOOKS_START_URL=site.url, **ENV)
        server.start()
        try:
            def crawling() -> list[int]:
                return [pid for pid in server.workers() if " scrapy crawl books " in command_line(pid)]

            wait_until(crawling, 30, server.output)
            spawned = [pid for pid in server.workers() if "books_scraper.web.worker" in command_line(pid)]
            assert len(spawned) == 1
            server.wait_until_up()
            with urllib.request.urlopen(server.url + "api/v1/stats/overview", timeout=10) as answer:
                assert json.load(answer)["total_books"] == 3
            assert server.workers() == spawned
        finally:
            server.stop()


def test_ctrl_c_during_the_first_crawl_stops_it_cleanly_and_says_so_in_one_line(tmp_path):
    """Ctrl-C at the terminal reaches the whole process group: the crawl stops cleanly (cancelled,
    nothing published), the waiting worker quietly, and serve says why it stops, no traceback."""
    build_site(tmp_path / "site", sample_books(45))
    with SiteServer(tmp_path / "site") as site:
        site.delay = 0.3
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "books_scraper.serve", "--port", str(free_port()), "--books-db",
             str(tmp_path / "books.db"), "--operations-db", str(tmp_path / "operations.db")],
            cwd=PROJECT, env={**env, "BOOKS_START_URL": site.url}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.default_int_handler),  # as at a terminal
        )
        try:
            wait_until(lambda: site.requests, 30)
            os.killpg(process.pid, signal.SIGINT)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 1
    assert output.strip().splitlines()[-1] == "serve: stopped during the first crawl; nothing to serve"
    assert "Traceback" not in output
    assert not (tmp_path / "books.db").exists()
    [run] = query(tmp_path / "operations.db", "select status from crawl_runs")
    assert run["status"] == "cancelled"


def test_a_worker_never_assigned_exits_quietly_when_the_supervisor_stops():
    spawned = spawn_worker(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    spawned.control.close()
    assert spawned.process.communicate(timeout=60) == ("", "")
    assert spawned.process.returncode == 0


def as_an_older_version_published_it(source: Path, target: Path) -> Path:
    """A copy of a published books file as the version before the aggregates left it: no aggregate
    tables, no previous price in the history, the last migration not applied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    conn = sqlite3.connect(target)
    with conn:
        for table in aggregates.AGGREGATE_TABLES:
            conn.execute(f"drop table {table}")
        conn.execute("drop index price_history_changes")
        conn.execute("alter table price_history drop column previous_price")
        conn.execute("alter table price_history drop column previous_run_id")
        conn.execute("delete from _sqlite_migrations where name = 'm004_price_history_previous'")
    conn.close()
    return target


def test_an_up_to_date_database_is_left_alone(published_db):
    before = published_db.path.stat()
    assert outdated(published_db.path) is None
    bring_up_to_date(published_db.path)
    after = published_db.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_an_older_database_is_republished_once_with_its_aggregates(published_db, tmp_path):
    old = as_an_older_version_published_it(published_db.path, tmp_path / "data" / "books.db")
    assert outdated(old) == "migrations m004_price_history_previous"
    inode = old.stat().st_ino
    bring_up_to_date(old)
    assert old.stat().st_ino != inode  # swapped in whole, like a crawl's publication
    assert outdated(old) is None
    assert not publish.staging_path(old).exists()
    books = query(old, "select count(*) as n from books")[0]["n"]
    assert query(old, "select count from table_counts where name = 'books'") == [{"count": books}]
    assert query(old, "select sum(books) as n from category_figures")[0]["n"] == books


def test_an_older_database_is_left_untouched_while_a_crawl_holds_the_lock(published_db, tmp_path):
    old = as_an_older_version_published_it(published_db.path, tmp_path / "data" / "books.db")
    content = old.read_bytes()
    with publish.crawl_lock(old):
        with pytest.raises(publish.CrawlLocked):
            bring_up_to_date(old)
    assert old.read_bytes() == content
    assert not publish.staging_path(old).exists()


def test_serve_republishes_an_older_database_at_startup_and_says_so(published_db, tmp_path):
    old = as_an_older_version_published_it(published_db.path, tmp_path / "data" / "books.db")
    ops = old.with_name("operations.db")
    shutil.copyfile(published_db.operations_path, ops)
    with ServeProcess(old, ops, tmp_path / "serve.log") as server:
        with urllib.request.urlopen(server.url + "api/v1/stats/overview", timeout=10) as answer:
            overview = json.load(answer)
        with urllib.request.urlopen(server.url + "books/price_changes.json?since=&_shape=array", timeout=10) as answer:
            assert json.load(answer) == []  # one crawl: no change, and no error for a missing column
        log = server.output()
    assert overview["total_books"] == query(old, "select count(*) as n from books")[0]["n"]
    assert "was published by an older version (migrations m004_price_history_previous)" in log
    assert "republished with its aggregates" in log


def test_a_worker_refuses_a_database_without_aggregates_in_one_line(published_db, tmp_path):
    """A file without aggregates that reaches a worker (a publication by an older crawler while the
    server runs) is not served: the worker says why, and the supervisor keeps serving the old one."""
    old = as_an_older_version_published_it(published_db.path, tmp_path / "books.db")
    (tmp_path / "metadata.json").write_text("{}")
    read, write = os.pipe()
    spawned = spawn_worker(stderr=subprocess.PIPE, text=True)
    with socket.socket() as listener:
        spawned.assign(listener, write, old, tmp_path / "operations.db", tmp_path / "metadata.json", {})
        os.close(write)
        _, stderr = spawned.process.communicate(timeout=60)
    assert os.read(read, 100) == b""  # it never said it was ready
    os.close(read)
    result = subprocess.CompletedProcess(spawned.process.args, spawned.process.returncode, "", stderr)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"worker: {old} has no aggregates, this version reads version {aggregates.AGGREGATES_VERSION}:"
        " it was published by another version; python -m books_scraper.serve rebuilds it at startup"
    )
