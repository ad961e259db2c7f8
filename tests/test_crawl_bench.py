"""Smoke runs of the crawl benchmarks on tiny generated sites: they run, crawl what they serve and
report every figure (the figures themselves belong in docs/benchmarks.md, not in assertions)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sitebuilder import build_site, sample_books
from support import PROJECT, crawl_env


@pytest.fixture
def open_dir():
    """A directory nginx can enter when it runs as nobody (pytest's own temporary tree is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="crawl-bench-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def bench(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=PROJECT, env=crawl_env(),
        capture_output=True, text=True, timeout=600,
    )


# bench/site_server.py serves with nginx where it is installed, else with Python's http.server.
SERVER = "nginx" if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else "python http.server"


def test_crawl_scale_crawls_each_size_and_times_the_publication_apart(open_dir):
    out = open_dir / "scale.json"
    result = bench("crawl_scale.py", "--books", "3,25", "--rounds", "1", "--sites", str(open_dir / "sites"),
                   "--json", str(out), "--concurrency", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())
    assert [run["books"] for run in runs["3"]] == [3] and [run["books"] for run in runs["25"]] == [25]
    for run in runs["3"] + runs["25"]:
        assert run["crawl_wall"] > 0 and run["publication_wall"] > 0 and run["peak_rss_mb"] > 0
        assert run["samples"] == [] or {"seconds", "books", "queued", "rss_mb"} <= set(run["samples"][0])
    assert f"served by {SERVER}" in result.stdout
    assert "| 25 |" in result.stdout and "| 3 |" in result.stdout
    # The sites are built once and kept for the next run.
    assert (open_dir / "sites" / "25" / ".complete").exists()


def test_crawl_bench_pairs_the_full_crawl_with_the_bare_fetch(open_dir):
    site = build_site(open_dir / "site", sample_books(25))
    for directory in [site, *site.rglob("*")]:
        if directory.is_dir():
            directory.chmod(0o755)
    # One pair: the pairing and every figure are there; the bench's own default (5) gives the medians.
    result = bench("crawl_bench.py", "--runs", "1", "--site", str(site), "--concurrency", "4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"served by {SERVER}" in result.stdout
    assert "27 pages, 1 alternating pairs" in result.stdout  # the root, listing pages 2 and every book
    assert "| full / bare, median of the paired ratios |" in result.stdout
    assert result.stderr.count("pair ") == 2
