"""/api/v1/health and /api/v1/stats/*: figures equal to the database's, computed once per version."""

from __future__ import annotations

import sqlite3

import pytest
from api_support import assert_error, make_datasette, value
from support import query

from books_scraper.api.cache import cache


async def test_health(api, published_db):
    response = await api.client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == {"name": "books", "reachable": True}
    assert body["books"] == value(published_db.path, "select count(*) from books")
    last = query(
        published_db.path, "select * from crawl_runs where status = 'published' order by id desc limit 1"
    )[0]
    assert body["last_crawl"]["id"] == last["id"]
    assert body["last_crawl"]["finished_at"] == last["finished_at"]


async def test_health_names_the_crawl_that_built_the_served_file(published_copy, api_env):
    # A crawl published after the server started: the journal knows it, the served file does not.
    with sqlite3.connect(published_copy.operations_path) as conn:
        conn.execute(
            "insert into crawl_runs (id, started_at, finished_at, status, books)"
            " values (9999, '2999-01-01T00:00:00+00:00', '2999-01-01T00:10:00+00:00', 'published', 7)"
        )
    conn.close()
    body = (await make_datasette(published_copy).client.get("/api/v1/health")).json()
    built = query(published_copy.path, "select max(id) as id from crawl_runs where status = 'published'")[0]
    assert body["last_crawl"]["id"] == built["id"] != 9999
    assert body["latest_crawl_attempt"]["id"] == 9999


async def test_health_without_the_books_database_is_a_json_503(published_db, api_env):
    ds = make_datasette(published_db)
    ds.remove_database("books")
    assert_error(await ds.client.get("/api/v1/health"), 503, "database_unavailable")
    assert_error(await ds.client.get("/api/v1/stats/overview"), 503, "database_unavailable")


async def test_overview_matches_sql(api, published_db):
    body = (await api.client.get("/api/v1/stats/overview")).json()
    db = published_db.path
    assert body["total_books"] == value(db, "select count(*) from books")
    assert body["total_categories"] == value(db, "select count(*) from categories")
    assert body["average_price"] == pytest.approx(value(db, "select avg(price) from books"), abs=0.005)
    assert body["min_price"] == value(db, "select min(price) from books")
    assert body["max_price"] == value(db, "select max(price) from books")
    assert body["in_stock"] == value(db, "select count(*) from books where in_stock = 1")
    assert body["total_stock"] == value(db, "select sum(stock_count) from books")
    assert list(body["rating_distribution"]) == ["1", "2", "3", "4", "5"]
    for stars, count in body["rating_distribution"].items():
        assert count == value(db, "select count(*) from books where rating = ?", [int(stars)])
    assert sum(body["rating_distribution"].values()) == body["total_books"]


async def test_category_stats_match_sql(api, published_db):
    body = (await api.client.get("/api/v1/stats/categories")).json()
    assert isinstance(body, list)  # the issue's (and the Flask clients') shape: a bare list
    expected = query(
        published_db.path,
        "select c.name, count(b.id) as n, avg(b.price) as avg_price, min(b.price) as lo,"
        " max(b.price) as hi, avg(b.rating) as avg_rating from categories c"
        " left join books b on b.category_id = c.id group by c.id order by c.name",
    )
    assert len(body) == len(expected)
    for got, row in zip(body, expected):
        assert got["category"] == row["name"]
        assert got["total_books"] == row["n"]
        assert got["min_price"] == row["lo"] and got["max_price"] == row["hi"]
        assert got["average_price"] == pytest.approx(row["avg_price"], abs=0.005)
        assert got["average_rating"] == pytest.approx(row["avg_rating"], abs=0.005)


async def test_statistics_are_computed_once_per_database_version(api):
    await api.client.get("/api/v1/stats/overview")
    before = cache.computed
    for path in ["/api/v1/stats/overview", "/api/v1/health", "/api/v1/stats/overview"]:
        assert (await api.client.get(path)).status_code == 200
    assert cache.computed == before


async def test_a_new_database_file_is_a_new_version(published_copy, api_env):
    ds = make_datasette(published_copy)
    await ds.client.get("/api/v1/stats/overview")
    before = cache.computed
    # Publication replaces the file: a new inode, so the next request recomputes.
    replacement = published_copy.path.with_name("new.db")
    replacement.write_bytes(published_copy.path.read_bytes())
    replacement.replace(published_copy.path)
    assert (await ds.client.get("/api/v1/stats/overview")).status_code == 200
    assert cache.computed == before + 1


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/v1/stats/nothing", 404, "not_found"),
    ],
)
async def test_bad_input_is_a_json_error(api, path, status, code):
    assert_error(await api.client.get(path), status, code)


async def test_a_trailing_slash_redirects_to_the_route(api):
    response = await api.client.get("/api/v1/health/")
    assert response.status_code == 302 and response.headers["location"] == "/api/v1/health"


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/stats/overview", "/api/v1/stats/categories"])
async def test_read_routes_refuse_post_with_405(api, path):
    response = await api.client.post(path, json={})
    assert_error(response, 405, "method_not_allowed")


async def test_figures_are_the_ones_stored_at_publication(published_copy, api_env):
    """The routes read the aggregates written at publication, not the books: emptied behind their back
    (never done to a published file), the books do not change the figures or the readiness count."""
    total = value(published_copy.path, "select count(*) from books")
    with sqlite3.connect(published_copy.path) as conn:
        conn.execute("delete from books")
    conn.close()
    ds = make_datasette(published_copy)
    assert (await ds.client.get("/api/v1/stats/overview")).json()["total_books"] == total
    assert (await ds.client.get("/api/v1/health")).json()["books"] == total
    assert (await ds.client.get("/api/v1/ready")).json()["books"] == total
    categories = (await ds.client.get("/api/v1/stats/categories")).json()
    assert sum(category["total_books"] for category in categories) == total


@pytest.mark.parametrize("path", ["/api/v1/stats/overview", "/api/v1/stats/categories", "/api/v1/health"])
async def test_a_database_without_aggregates_is_a_json_503_that_says_why(published_copy, api_env, path):
    """A file published by an older version, served by a plain `datasette serve` (python -m
    books_scraper.serve would have brought it up to date): a clear 503, not a 500."""
    with sqlite3.connect(published_copy.path) as conn:
        for table in ("category_figures", "rating_figures", "table_counts"):
            conn.execute(f"drop table {table}")
    conn.close()
    body = assert_error(await make_datasette(published_copy).client.get(path), 503, "database_unavailable")
    assert "no aggregates" in body["error"] and "books_scraper.serve" in body["error"]
