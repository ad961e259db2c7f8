"""The Datasette publication through `datasette.client`: facets, search, SQL, CSV, limits, queries."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import urllib.request
from urllib.parse import urlencode
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean

import pytest
from sqlite_utils import Database
from datasette_dashboards import replace_opts_in_query
from serving import ServeProcess, load_metadata, publication
from sitebuilder import build_site, sample_books
from support import SiteServer, crawl, query

from books_scraper import aggregates, storage
from books_scraper.api import predictions as predictions_api
from books_scraper.web.query_limits import MAX_COLUMNS, MAX_RESULT_BYTES, MAX_VALUE_BYTES
from books_scraper.startup import PUBLIC_SETTINGS, datasette_command

ROUNDED = 0.005 + 1e-9  # round(x, 2) is at most half a penny off, give or take float error
RUNAWAY_SQL = "with recursive n(x) as (select 1 union all select x + 1 from n) select count(*) from n"


def catalogue(path: Path) -> list[dict]:
    """Every book with its category name, read straight from the database file."""
    return query(
        path,
        "select b.*, c.name as category from books b join categories c on c.id = b.category_id",
    )


@pytest.fixture
def ds(published_db):
    return publication(published_db.path, published_db.operations_path)


async def get_json(ds, path: str, status: int = 200):
    response = await ds.client.get(path)
    assert response.status_code == status, response.text[:500]
    return response.json()


async def test_facet_counts_equal_the_database_counts(ds, published_db):
    books = catalogue(published_db.path)
    data = await get_json(ds, "/books/books.json?_size=0")  # facets come from metadata.yml
    facets = data["facet_results"]
    assert set(facets) == {"category_id", "rating"}
    assert data["filtered_table_rows_count"] == len(books)

    # The largest categories, as many as facet_size; the rest behind the facet's "..." link.
    size = load_metadata()["databases"]["books"]["tables"]["books"]["facet_size"]
    per_category = Counter(b["category"] for b in books)
    shown = {(r["label"], r["count"]) for r in facets["category_id"]["results"]}
    assert shown <= set(per_category.items()) and len(shown) == min(size, len(per_category))
    assert min(count for _, count in shown) >= sorted(per_category.values(), reverse=True)[len(shown) - 1]
    assert facets["category_id"]["truncated"] is (len(per_category) > size)
    ratings = {(r["value"], r["count"]) for r in facets["rating"]["results"]}
    assert ratings == set(Counter(b["rating"] for b in books).items())


async def test_category_facet_filters_to_its_count(ds, published_db):
    books = catalogue(published_db.path)
    category_id, expected = Counter(b["category_id"] for b in books).most_common(1)[0]
    data = await get_json(ds, f"/books/books.json?category_id={category_id}&_size=0")
    assert data["filtered_table_rows_count"] == expected


async def test_search_finds_a_known_title(ds, published_db):
    title = published_db.plain_title()
    data = await get_json(ds, f"/books/books.json?_search={title}&_shape=objects")
    titles = [row["title"] for row in data["rows"]]
    assert title in titles
    assert len(titles) < len(catalogue(published_db.path))


async def test_sql_returns_json_query(ds, published_db):
    sql = "select id, title, price from books where price < :cap order by price, id limit 5"
    response = await ds.client.get("/books.json", params={"sql": sql, "cap": "20", "_shape": "array"})
    assert response.status_code == 200
    expected = query(published_db.path, sql, ("20",))
    assert response.json() == expected
    assert len(expected) == 5


@pytest.mark.parametrize("row_cap", [None, 100])
async def test_csv_stream_returns_every_book_and_a_header(published_db, row_cap):
    # Also with a row cap below the catalogue's size: streaming goes past max_returned_rows.
    settings = {"max_returned_rows": row_cap} if row_cap else {}
    ds = publication(published_db.path, published_db.operations_path, **settings)
    response = await ds.client.get("/books/books.csv?_stream=on")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    table = list(csv.reader(io.StringIO(response.text)))
    header, body = table[0], table[1:]
    assert {"id", "title", "price", "rating", "category_id"} <= set(header)
    books = catalogue(published_db.path)
    assert len(body) == len(books)
    ids = [int(row[header.index("id")]) for row in body]
    assert sorted(ids) == sorted(b["id"] for b in books)


@pytest.fixture(scope="module")
def catalogue_past_the_old_csv_cap(published_db, tmp_path_factory) -> Path:
    """The crawled books copied 30 times under new ids (30,000 books, a CSV of about 60 MB: past the
    50 MB that max_csv_mb used to cut streamed CSV at), then shaped as a publication is."""
    path = tmp_path_factory.mktemp("large") / "books.db"
    shutil.copyfile(published_db.path, path)
    db = Database(path)
    columns = [column for column in db["books"].columns_dict if column not in ("id", "upc")]
    listed = ", ".join(columns)
    top = db.execute("select max(id) from books").fetchone()[0]
    with db.atomic():
        for copy in range(1, 30):
            db.execute(
                f"insert into books (id, upc, {listed}) select id + ? * ?, upc || '-' || ?, {listed}"
                " from books where id <= ?", [copy, top, copy, top],
            )
    storage.ensure_db_shape(db)
    db.close()
    return path


async def test_csv_stream_returns_the_whole_catalogue_past_the_old_cap(catalogue_past_the_old_csv_cap, published_db):
    path = catalogue_past_the_old_csv_cap
    ds = publication(path, published_db.operations_path)
    response = await ds.client.get("/books/books.csv?_stream=on")
    assert response.status_code == 200
    assert len(response.content) > 50 * 1024 * 1024
    table = list(csv.reader(io.StringIO(response.text)))
    header, body = table[0], table[1:]
    ids = [int(row[header.index("id")]) for row in body]
    crawled = query(published_db.path, "select count(*) as n from books")[0]["n"]
    assert len(ids) == len(set(ids)) == query(path, "select count(*) as n from books")[0]["n"] == 30 * crawled


async def test_datasette_takes_its_counts_and_hash_from_the_publication(published_copy):
    """Datasette is given what publication wrote (table_counts, the publication's hash) and so counts
    nothing and hashes nothing: emptied behind its back, the books still show the published count."""
    path = published_copy.path
    books = query(path, "select count(*) as n from books")[0]["n"]
    [publication_row] = query(path, "select hash from publication")
    with sqlite3.connect(path) as conn:
        conn.execute("delete from books")
    conn.close()
    ds = publication(path, published_copy.operations_path)
    database = (await ds.client.get("/books.json")).json()
    assert {t["name"]: t["count"] for t in database["tables"]}["books"] == books
    table = (await ds.client.get("/books/books.json?_size=0")).json()
    assert table["filtered_table_rows_count"] == books
    databases = {d["name"]: d for d in (await ds.client.get("/-/databases.json")).json()}
    assert databases["books"]["hash"] == publication_row["hash"]
    download = await ds.client.get("/books.db", headers={"if-none-match": f'"{publication_row["hash"]}"'})
    assert download.status_code == 304


@pytest.mark.parametrize(
    "database,sql",
    [
        ("books", "delete from books"),
        ("books", "update books set price = 0"),
        ("books", "with doomed as (select id from books) delete from books"),
        ("operations", "delete from crawl_runs"),
        ("operations", "with t as (select 1) insert into crawl_runs (started_at, status) select 'x', 'y'"),
    ],
)
async def test_writes_through_sql_are_refused(published_copy, database, sql):
    ds = publication(published_copy.path, published_copy.operations_path)
    path = {"books": published_copy.path, "operations": published_copy.operations_path}[database]
    table = "books" if database == "books" else "crawl_runs"
    before = query(path, f"select * from {table} order by id")
    response = await ds.client.get(f"/{database}.json", params={"sql": sql})
    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert query(path, f"select * from {table} order by id") == before
    assert before


async def test_runaway_query_is_stopped_with_a_json_error(ds):
    response = await ds.client.get("/books.json", params={"sql": RUNAWAY_SQL})
    assert response.status_code == 400
    error = response.json()
    assert error["ok"] is False
    assert error["title"] == "SQL Interrupted"
    assert "took too long" in error["error"]
    assert "<" not in error["error"]  # words for a JSON client, not Datasette's HTML page fragment


async def canned(ds, name: str, **params: str) -> list[dict]:
    response = await ds.client.get(f"/books/{name}.json", params={**params, "_shape": "array"})
    assert response.status_code == 200, response.text[:500]
    return response.json()


async def test_every_canned_query_is_tested():
    assert set(load_metadata()["databases"]["books"]["queries"]) == {
        "books_rated_at_least",
        "books_in_price_range",
        "category_summary",
        "cheapest_book_per_category",
        "price_changes",
    }


async def test_books_rated_at_least(ds, published_db):
    books = catalogue(published_db.path)
    best = [b for b in books if b["rating"] == 5]
    answer = await canned(ds, "books_rated_at_least")
    assert [r["id"] for r in answer] == [b["id"] for b in sorted(best, key=lambda b: (b["price"], b["title"]))]

    category = Counter(b["category"] for b in books).most_common(1)[0][0]
    answer = await canned(ds, "books_rated_at_least", min_rating="4", category=category)
    expected = [b for b in books if b["rating"] >= 4 and b["category"] == category]
    expected.sort(key=lambda b: (-b["rating"], b["price"], b["title"]))
    assert [(r["id"], r["rating"], r["category"]) for r in answer] == [
        (b["id"], b["rating"], category) for b in expected
    ]
    assert expected


async def test_books_in_price_range(ds, published_db):
    books = catalogue(published_db.path)
    answer = await canned(ds, "books_in_price_range", min_price="20", max_price="30.5")
    expected = sorted((b for b in books if 20 <= b["price"] <= 30.5), key=lambda b: (b["price"], b["title"]))
    assert [(r["id"], r["price"]) for r in answer] == [(b["id"], b["price"]) for b in expected]
    assert 0 < len(expected) < len(books)


async def test_books_in_price_range_includes_both_bounds(ds, published_db):
    books = catalogue(published_db.path)
    price = Counter(b["price"] for b in books).most_common(1)[0][0]  # a price books have exactly
    answer = await canned(ds, "books_in_price_range", min_price=str(price), max_price=str(price))
    assert sorted(r["id"] for r in answer) == sorted(b["id"] for b in books if b["price"] == price)
    assert answer


async def test_category_summary(ds, published_db):
    by_category = defaultdict(list)
    for book in catalogue(published_db.path):
        by_category[book["category"]].append(book)
    answer = {r["category"]: r for r in await canned(ds, "category_summary")}
    assert set(answer) == set(by_category)
    for name, books in by_category.items():
        prices = [b["price"] for b in books]
        assert answer[name]["books"] == len(books)
        assert answer[name]["min_price"] == min(prices)
        assert answer[name]["max_price"] == max(prices)
        assert answer[name]["avg_price"] == pytest.approx(mean(prices), abs=ROUNDED)
        assert answer[name]["avg_rating"] == pytest.approx(mean(b["rating"] for b in books), abs=ROUNDED)


async def test_cheapest_book_per_category(ds, published_db):
    cheapest = {}
    for book in catalogue(published_db.path):
        best = cheapest.get(book["category"])
        if best is None or (book["price"], book["title"]) < (best["price"], best["title"]):
            cheapest[book["category"]] = book
    answer = await canned(ds, "cheapest_book_per_category")
    assert {r["category"]: (r["id"], r["price"]) for r in answer} == {
        name: (b["id"], b["price"]) for name, b in cheapest.items()
    }


@pytest.fixture(scope="module")
def recrawled_db(tmp_path_factory):
    """A generated site crawled twice, with two prices and one stock count changed in between."""
    workdir = tmp_path_factory.mktemp("recrawled")
    db_path = workdir / "books.db"
    books = sample_books()
    for number in (1, 2):
        site = build_site(workdir / f"site{number}", books)
        with SiteServer(site) as server:
            result = crawl(server.url, db_path)
        assert result.returncode == 0, result.stderr[-3000:]
        books[4].price, books[9].price = "£14.99", "£99.00"  # books 5 and 10
        books[6].availability = "In stock (1 available)"  # book 7: stock only, same price
    return db_path


async def test_price_changes_between_crawls(recrawled_db):
    ds = publication(recrawled_db, recrawled_db.with_name("operations.db"))
    first, second = [r["id"] for r in query(recrawled_db, "select id from crawl_runs order by id")]
    answer = await canned(ds, "price_changes")
    assert sorted(
        (r["book_id"], r["previous_run_id"], r["run_id"], r["previous_price"], r["price"], r["change"])
        for r in answer
    ) == [
        (5, first, second, 16.25, 14.99, -1.26),
        (10, first, second, 22.5, 99.0, 76.5),
    ]
    assert await canned(ds, "price_changes", since="9999-01-01") == []


async def test_price_changes_after_a_single_crawl_are_none(ds):
    assert await canned(ds, "price_changes") == []


def dashboard() -> dict:
    return load_metadata()["plugins"]["datasette-dashboards"]["books"]


async def chart_query(ds, name: str, **filters: str) -> list[dict]:
    chart = dashboard()["charts"][name]
    sql = replace_opts_in_query(chart["query"], filters)  # as the dashboard page does
    response = await ds.client.get(
        f"/{chart['db']}.json", params={"sql": sql, **filters, "_shape": "objects"}
    )
    assert response.status_code == 200, response.text[:500]
    data = response.json()
    assert not data["truncated"]
    return data["rows"]


async def test_dashboard_page_lists_its_charts(ds):
    response = await ds.client.get("/-/dashboards/books")
    assert response.status_code == 200
    for chart in dashboard()["charts"].values():
        assert chart["title"] in response.text
    assert "vega-lite.min.js" in response.text


@pytest.mark.parametrize("filtered", [False, True])
async def test_dashboard_charts_show_the_catalogue(ds, published_db, filtered):
    books = catalogue(published_db.path)
    filters = {}
    if filtered:
        filters["category"] = Counter(b["category"] for b in books).most_common(2)[1][0]
        books = [b for b in books if b["category"] == filters["category"]]

    assert (await chart_query(ds, "total-books", **filters)) == [{"books": len(books)}]
    [average] = await chart_query(ds, "average-price", **filters)
    assert average["average_price"] == f"£{mean(b['price'] for b in books):.2f}"
    per_category = await chart_query(ds, "books-per-category", **filters)
    assert {(r["category"], r["books"]) for r in per_category} == set(
        Counter(b["category"] for b in books).items()
    )
    ratings = await chart_query(ds, "rating-distribution", **filters)
    assert {(r["rating"], r["books"]) for r in ratings} == set(Counter(b["rating"] for b in books).items())
    histogram = await chart_query(ds, "price-histogram", **filters)
    assert {(r["price_from"], r["price_to"], r["books"]) for r in histogram} == {
        (low, low + 5, count)
        for low, count in Counter(int(b["price"] // 5) * 5 for b in books).items()
    }
    by_rating = await chart_query(ds, "average-price-by-rating", **filters)
    for row in by_rating:
        prices = [b["price"] for b in books if b["rating"] == row["rating"]]
        assert row["average_price"] == pytest.approx(mean(prices), abs=ROUNDED)


async def test_the_average_price_says_no_books_when_a_filter_matches_none(ds):
    assert await chart_query(ds, "average-price", category="No such category") == [{"average_price": "No books"}]


async def test_metadata_describes_every_column(ds, published_db):
    described = load_metadata()["databases"]["books"]["tables"]
    for table in ("books", "categories", "crawl_runs", "price_history", *aggregates.AGGREGATE_TABLES):
        columns = [r["name"] for r in query(published_db.path, f"pragma table_info({table})")]
        assert set(described[table]["columns"]) == set(columns), table


async def test_every_visible_table_is_described_and_the_title_index_is_hidden(ds):
    described = load_metadata()["databases"]["books"]["tables"]
    tables = (await get_json(ds, "/books.json"))["tables"]
    visible = {t["name"] for t in tables if not t["hidden"]}
    undescribed = {n for n in visible if not (described.get(n, {}).get("description") or described.get(n, {}).get("description_html"))}
    assert visible and not undescribed, undescribed
    assert {"book_titles_folded", "book_titles_trigrams", "book_titles_trigram"} <= {t["name"] for t in tables if t["hidden"]}


async def test_books_show_their_category_by_name(ds, published_db):
    [book] = query(
        published_db.path,
        "select b.id, c.name from books b join categories c on c.id = b.category_id limit 1",
    )
    data = await get_json(ds, f"/books/books.json?id={book['id']}&_labels=on&_shape=objects")
    assert data["rows"][0]["category_id"]["label"] == book["name"]


def test_the_plain_datasette_invocation(tmp_path):
    command = datasette_command(tmp_path / "books.db", tmp_path / "operations.db", "0.0.0.0", 9001)
    assert command[1:6] == ["-m", "datasette", "serve", "-i", str(tmp_path / "books.db")]
    assert command[6] == str(tmp_path / "operations.db")
    assert command[command.index("--port") + 1] == "9001"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    settings = {command[i + 1]: command[i + 2] for i, part in enumerate(command) if part == "--setting"}
    assert settings["allow_csv_stream"] == "on"
    assert settings["sql_time_limit_ms"] == str(PUBLIC_SETTINGS["sql_time_limit_ms"])


def test_serve_crawls_when_there_is_no_database_then_serves_it(tmp_path):
    site = build_site(tmp_path / "site", sample_books())
    books_db, operations_db = tmp_path / "data" / "books.db", tmp_path / "data" / "operations.db"
    with SiteServer(site) as server:
        with ServeProcess(
            books_db, operations_db, tmp_path / "serve.log", startup=120, BOOKS_START_URL=server.url
        ) as served:
            with urllib.request.urlopen(served.url + "books/books.json?_size=0", timeout=10) as answer:
                assert json.load(answer)["filtered_table_rows_count"] == len(sample_books())
            with urllib.request.urlopen(served.url + "-/databases.json", timeout=10) as answer:
                databases = {d["name"]: d for d in json.load(answer)}
    assert databases["books"]["is_mutable"] is False
    assert databases["operations"]["is_mutable"] is True
    journal = query(operations_db, "select status from crawl_runs")
    assert journal == [{"status": "published"}]


@pytest.mark.parametrize(
    "path", ["/books/books.json?_sort=description", "/books/books.json?_sort_desc=upc",
             "/books/books.json?_sort=id&_sort_desc=id", "/books/books?_sort=description"],
)
async def test_an_unsortable_column_is_a_400(ds, path):
    response = await ds.client.get(path)
    assert response.status_code == 400, response.text[:500]
    if ".json" in path:
        assert response.json()["ok"] is False and "sort" in response.json()["error"]
    else:
        assert "Cannot sort table by description" in response.text


async def test_one_query_cannot_build_a_huge_value(ds, published_db):
    for sql in [f"select randomblob({MAX_VALUE_BYTES + 1})", "select zeroblob(900000000)"]:
        response = await ds.client.get("/books.json", params={"sql": sql})
        assert response.status_code == 400, sql
        assert response.json()["ok"] is False
        assert "too big" in response.json()["error"]
    # Every stored value still reads, the longest description included.
    longest = "select id, description from books order by length(description) desc limit 1"
    data = await get_json(ds, "/books.json?" + urlencode({"sql": longest, "_shape": "array"}))
    assert data == query(published_db.path, longest)
    assert len(data[0]["description"].encode()) < MAX_VALUE_BYTES


# Values per row that put one full page of rows just past the result budget, and just under it.
ROWS = 1000
OVER, UNDER = MAX_RESULT_BYTES // ROWS + 100, MAX_RESULT_BYTES // ROWS - 100


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param(f"select randomblob({OVER}) from books", id="big-blobs-on-every-row"),
        pytest.param("select " + ", ".join(["description"] * 60) + " from books", id="one-column-many-times"),
        pytest.param(
            f"with recursive n(i) as (select 1 union all select i + 1 from n where i < {ROWS}) "
            f"select i, hex(randomblob({OVER // 2})) from n",
            id="a-generated-table-of-hex-strings",
        ),
    ],
)
async def test_one_query_cannot_return_more_than_the_result_budget(ds, published_db, sql):
    if "from books" in sql and len(query(published_db.path, "select id from books")) < ROWS:
        pytest.skip(f"needs {ROWS} books: the real site's copy")
    response = await ds.client.get("/books.json", params={"sql": sql})
    assert response.status_code == 400, response.text[:300]
    assert f"larger than {MAX_RESULT_BYTES // 1_000_000} MB" in response.json()["error"]
    assert len(response.content) < 100_000


async def test_a_result_just_under_the_budget_is_answered_whole(ds):
    sql = (
        f"with recursive n(i) as (select 1 union all select i + 1 from n where i < {ROWS}) "
        f"select i, randomblob({UNDER}) as b from n"
    )
    data = await get_json(ds, "/books.json?" + urlencode({"sql": sql, "_shape": "array"}))
    assert len(data) == ROWS and data[-1]["i"] == ROWS


async def test_the_budget_is_per_query_so_every_table_still_reads_whole(ds, published_db):
    total = len(query(published_db.path, "select id from books"))
    data = await get_json(ds, "/books.json?" + urlencode({"sql": "select * from books", "_shape": "array"}))
    assert len(data) == min(total, PUBLIC_SETTINGS["max_returned_rows"])
    response = await ds.client.get("/books/books.csv?_stream=on")
    assert response.status_code == 200 and response.text.count("\n") > total


async def test_one_row_cannot_have_more_than_the_column_cap(ds):
    response = await ds.client.get("/books.json", params={"sql": "select " + ", ".join(["1"] * (MAX_COLUMNS + 1))})
    assert response.status_code == 400
    assert "too many columns" in response.json()["error"]



async def test_the_home_page_lists_the_books_first(ds):
    databases = [db["name"] for db in (await get_json(ds, "/.json")).values()]
    assert databases[:2] == ["books", "operations"]


async def test_table_pages_suggest_no_facets(ds):
    # Suggesting runs a query per column on every page; the useful facets are in metadata.yml.
    data = await get_json(ds, "/books/books.json?_size=1")
    assert data["suggested_facets"] == []
    assert set(data["facet_results"]) == {"category_id", "rating"}


async def test_the_operations_dashboard_scores_each_model_against_the_published_ratings(published_copy):
    ratings = {r["id"]: r["rating"] for r in query(published_copy.path, "select id, rating from books")}
    ids = sorted(ratings)[:4]
    predictions = {"model-a": [(i, 3.5) for i in ids], "model-b": [(i, float(ratings[i])) for i in ids[:2]]}
    ops = Database(published_copy.operations_path)
    for model, rows in predictions.items():
        ops["predictions"].insert_all(
            {"batch_id": model, "model": model, "book_id": i, "predicted_rating": p, "created_at": "2026-11-26"}
            for i, p in rows
        )
    ds = publication(published_copy.path, published_copy.operations_path)
    charts = load_metadata()["plugins"]["datasette-dashboards"]["operations"]["charts"]
    await ds.invoke_startup()
    await predictions_api._warming[ds]  # the summary the server works out as it starts
    data = await get_json(ds, "/operations.json?" + urlencode({"sql": charts["model-mae"]["query"], "_shape": "array"}))
    expected = [
        {"model": model, "scored": len(rows),
         "mae": round(sum(abs(p - ratings[i]) for i, p in rows) / len(rows), 3)}
        for model, rows in sorted(predictions.items())
    ]
    assert data == expected and expected[1]["mae"] == 0.0
    counted = await get_json(
        ds, "/operations.json?" + urlencode({"sql": charts["predictions-per-model"]["query"], "_shape": "array"})
    )
    assert [(r["model"], r["predictions"], r["batches"]) for r in counted] == [("model-a", 4, 1), ("model-b", 2, 1)]
