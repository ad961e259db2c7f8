"""bench/scale.py end to end at tiny sizes: real catalogues built by the storage code, real server
processes on 127.0.0.1, every route answered; the report's shape, never its timings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT / "bench" / "scale.py"


def load_scale():
    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    work = tmp_path_factory.mktemp("scale")
    out = work / "results.json"
    command = [sys.executable, str(SCRIPT), "--sizes", "50,200", "--seed", "generated", "--cache", str(work / "cache"),
               "--first", "shared", "--repeat", "1", "--load-seconds", "0", "--export-timeout", "60",
               "--out", str(out)]
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout, work


def test_every_route_answers_2xx_at_every_size(run) -> None:
    results, _, _ = run
    assert sorted(results["sizes"], key=int) == ["50", "200"]
    for size in results["sizes"].values():
        for name, figures in size["routes"].items():
            statuses = set(figures["statuses"]) | {figures["first_status"]}
            assert all(200 <= status < 300 for status in statuses), (name, figures)


def test_the_report_has_every_kind_of_route_with_its_figures(run) -> None:
    results, _, _ = run
    routes = results["sizes"]["200"]["routes"]
    groups = {figures["group"] for figures in routes.values()}
    assert groups == {"api", "export", "canned", "chart", "table", "datasette"}
    for name in ("books q search", "books title search", "stats categories", "predictions summary",
                 "training-data NDJSON test", "Datasette CSV stream", "canned category_summary",
                 "chart books/average-price-by-rating", "table HTML /books/books", "search JSON"):
        assert name in routes
    for figures in routes.values():
        for key in ("warm_ms", "first_ms", "bytes", "rss_peak_mb", "rss_growth_mb", "health_max_ms", "goal", "met"):
            assert key in figures
        assert figures["bytes"] > 0
    assert {g["route"] for g in results["goals"]} >= {"server start to first answer", "features all JSON"}
    size = results["sizes"]["200"]
    assert size["books"] == 200 and size["start_s"]["starts"] >= 1 and size["peak_rss_mb"] > 0


def test_full_exports_are_counted_complete(run) -> None:
    results, _, _ = run
    for key, size in results["sizes"].items():
        exports = {name: f for name, f in size["routes"].items() if f["group"] == "export"}
        for name, figures in exports.items():
            if name == "training-data NDJSON test":
                assert 0 < figures["rows"] < int(key)
                assert figures["complete"] is None
            else:
                assert figures["rows"] == int(key), name
                assert figures["complete"] is True, name


def test_prints_the_sizes_side_by_side_and_leaves_no_server(run) -> None:
    _, stdout, work = run
    assert "| route | 50 warm / first | 200 warm / first | 200/50 warm |" in stdout
    assert "| export | 50 rows/s | 200 rows/s | rows |" in stdout
    assert "Goals missed:" in stdout
    assert processes_mentioning(str(work / "cache")) == []


def test_a_catalogue_is_built_once_and_rebuilt_when_the_build_changes(tmp_path: Path) -> None:
    scale = load_scale()
    seed, name = scale.seed_records("generated")
    first = scale.catalogue(30, seed, name, tmp_path, print_fn=lambda *_: None)
    again = scale.catalogue(30, seed, name, tmp_path, print_fn=lambda *_: None)
    assert (first.build["cached"], again.build["cached"]) == (False, True)
    assert again.books_db == first.books_db
    scale.BUILD_VERSION += 1
    rebuilt = scale.catalogue(30, seed, name, tmp_path, print_fn=lambda *_: None)
    assert rebuilt.build["cached"] is False and rebuilt.books_db != first.books_db
    assert not first.books_db.exists()  # the stale copy of that size is gone
    rows = scale.catalogue_facts(rebuilt)
    assert rows["books"] == 30


def test_copies_of_a_crawled_database_get_new_ids_upcs_and_urls(tmp_path: Path) -> None:
    scale = load_scale()
    seed, name = scale.seed_records("generated")
    books = tmp_path / "books.db"
    scale.build_books_db(books, seed[:7], 20)
    import sqlite3

    conn = sqlite3.connect(books)
    rows = conn.execute("select id, upc, title, product_url from books order by id").fetchall()
    history = conn.execute("select run_id, count(*) from price_history group by run_id").fetchall()
    conn.close()
    assert [row[0] for row in rows] == list(range(1, 21))
    assert len({row[1] for row in rows}) == 20
    assert rows[7][2] == rows[0][2] and rows[7][3].endswith("_8/index.html")
    assert history == [(1, 20)]  # no book id is a multiple of 100: no second-run price change


def test_a_copy_left_by_an_earlier_schema_is_upgraded_not_rebuilt(tmp_path: Path) -> None:
    scale = load_scale()
    seed, name = scale.seed_records("generated")
    built = scale.catalogue(30, seed, name, tmp_path, print_fn=lambda *_: None)
    earlier = built.books_db.parent.rename(tmp_path / "30-000000000000")  # as if the schema had changed since
    upgraded = scale.catalogue(30, seed, name, tmp_path, print_fn=lambda *_: None)
    assert upgraded.books_db == built.books_db and upgraded.build["upgraded_from"] == earlier.name
    assert not earlier.exists()
    assert scale.catalogue_facts(upgraded)["books"] == 30


def test_a_catalogue_in_use_by_another_run_is_not_removed(tmp_path: Path) -> None:
    scale = load_scale()
    seed, name = scale.seed_records("generated")
    built = scale.catalogue(30, seed, name, tmp_path, print_fn=lambda *_: None)
    earlier = built.books_db.parent.rename(tmp_path / "30-000000000000")
    with scale.in_use(earlier):
        scale.catalogue(30, seed, name, tmp_path, print_fn=lambda *_: None)
        assert (earlier / "books.db").exists()
