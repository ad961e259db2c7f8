"""examples/train_and_predict.py against the real stack: `python -m books_scraper.serve` on 127.0.0.1."""

from __future__ import annotations

import json
import math
import subprocess
import sys

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
