"""`python -m books_scraper.serve` as an operator meets it: help, bad values, a busy port, what it says."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml
from api_support import ENV, TOKENS
from serving import ServeProcess
from support import PROJECT

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
