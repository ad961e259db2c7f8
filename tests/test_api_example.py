"""examples/train_and_predict.py against the real stack: `python -m books_scraper.serve` on 127.0.0.1."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from api_support import ENV, PASSWORDS, PROJECT
from support import query
from serving import ServeProcess

from books_scraper.api.ml import in_test_split


def test_example_trains_posts_and_reads_its_score(published_copy, tmp_path):
    with ServeProcess(published_copy.path, published_copy.operations_path, tmp_path / "serve.log", **ENV) as server:
        env = {"PATH": "/usr/bin:/bin", "BOOKS_API_USERNAME": "scientist",
               "BOOKS_API_PASSWORD": PASSWORDS["scientist"]}
        result = subprocess.run(
            [sys.executable, "examples/train_and_predict.py", "--url", server.url, "--model", "ols-test", "--seed", "5"],
            cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr + server.output()
    report = json.loads(result.stdout)

    books = {r["id"]: r["rating"] for r in query(published_copy.path, "select id, rating from books")}
    test_ids = {i for i in books if in_test_split(i, 5, 0.2)}
    assert report["test_rows"] == len(test_ids) and report["train_rows"] == len(books) - len(test_ids)

    stored = query(published_copy.operations_path, "select * from predictions where batch_id = ?", [report["batch_id"]])
    assert {row["book_id"] for row in stored} == test_ids
    assert {row["model"] for row in stored} == {"ols-test"} and {row["actor"] for row in stored} == {"scientist"}
    assert all(0 <= row["predicted_rating"] <= 5 for row in stored)

    errors = [row["predicted_rating"] - books[row["book_id"]] for row in stored]
    summary = report["summary"]
    assert summary["predictions"] == summary["evaluated"] == len(test_ids)
    assert math.isclose(summary["mae"], sum(map(abs, errors)) / len(errors), abs_tol=1e-4)
    assert math.isclose(summary["rmse"], math.sqrt(sum(e * e for e in errors) / len(errors)), abs_tol=1e-4)


def run_example(server_url: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "examples/train_and_predict.py", "--url", server_url],
        cwd=PROJECT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize(
    "env,message",
    [
        pytest.param({}, "no credentials: set BOOKS_API_TOKEN", id="no-credentials-says-which-variables"),
        pytest.param({"BOOKS_API_TOKEN": "not-a-token"}, "401", id="a-wrong-token-shows-the-apis-error"),
        pytest.param({"BOOKS_API_USERNAME": "scientist", "BOOKS_API_PASSWORD": "wrong"},
                     "401 wrong username or password (invalid_credentials)", id="a-wrong-password-shows-the-apis-error"),
    ],
)
def test_the_example_says_what_is_wrong_before_downloading(published_db, tmp_path, env, message):
    with ServeProcess(published_db.path, published_db.operations_path, tmp_path / "serve.log", **ENV) as server:
        result = run_example(server.url, **env)
    assert result.returncode == 1
    assert result.stderr.startswith("train_and_predict: ") and message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_example_names_a_server_it_cannot_reach(tmp_path):
    result = run_example("http://127.0.0.1:9/", BOOKS_API_TOKEN="x")
    assert result.returncode == 1 and "cannot reach http://127.0.0.1:9/" in result.stderr
