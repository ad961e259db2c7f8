"""/api/v1/ml/features and /api/v1/ml/training-data: rows equal to the database's, CSV/NDJSON, splits."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from urllib.parse import parse_qs, urlparse

import pytest
from api_support import assert_error, make_datasette
from support import query

from sqlite_utils import Database

from books_scraper import storage
from books_scraper.api.ml import FEATURE_PAGE_MAX, TRAINING_COLUMNS, in_test_split

FEATURES_SQL = (
    "select id, price, rating, in_stock as available, stock_count, category_id as category_code"
    " from books order by id"
)
TRAINING_SQL = "select b.*, c.name as category from books b join categories c on c.id = b.category_id order by b.id"


async def test_features_json_pages_equal_sql(api, published_db):
    expected = query(published_db.path, FEATURES_SQL)
    rows, url = [], "/api/v1/ml/features?limit=400"
    while url:
        body = (await api.client.get(url.replace("http://localhost", ""))).json()
        assert body["total"] == len(expected)
        rows += body["features"]
        url = body["next"]
    assert rows == expected
    assert {row["available"] for row in rows} <= {0, 1}


async def test_features_are_every_book_unless_paged(published_copy, api_env):
    with sqlite3.connect(published_copy.path) as conn:  # more books than any page size so far
        conn.execute(
            "with recursive n(i) as (select 1 union all select i + 1 from n where i < 1500)"
            " insert into books (id, upc, title, price, rating, in_stock, stock_count, category_id, product_url)"
            " select 100000 + i, 'extra-' || i, 'Extra ' || i, 10, 3, 0, 0, (select min(id) from categories),"
            " 'http://example.invalid/' || i from n"
        )
    conn.close()
    storage.ensure_db_shape(Database(published_copy.path))  # as a publication would: the aggregates too
    expected = query(published_copy.path, FEATURES_SQL)
    client = make_datasette(published_copy).client
    body = (await client.get("/api/v1/ml/features")).json()
    assert body["features"] == expected
    assert body["total"] == body["limit"] == len(expected) and body["offset"] == 0 and body["next"] is None
    # A page larger than a stream's chunk is streamed too, in the same envelope, its next link included.
    assert len(expected) > FEATURE_PAGE_MAX + 100
    first = (await client.get(f"/api/v1/ml/features?limit={FEATURE_PAGE_MAX + 100}")).json()
    assert first["features"] == expected[: FEATURE_PAGE_MAX + 100] and first["total"] == len(expected)
    rest = (await client.get(first["next"].replace("http://localhost", ""))).json()
    assert rest["features"] == expected[FEATURE_PAGE_MAX + 100 :] and rest["next"] is None
    skipped = (await client.get(f"/api/v1/ml/features?offset={len(expected) - 3}")).json()
    assert skipped["features"] == expected[-3:] and skipped["next"] is None


@pytest.mark.parametrize("split", ["all", "test", "train"])
@pytest.mark.parametrize("seed", [pytest.param(42, id="default-seed"), pytest.param(7, id="seed-7")])
async def test_a_database_without_book_split_serves_the_same_rows(published_db, published_copy, api_env, split, seed):
    """book_split is only a faster way to the same split: without it, the fraction is computed."""
    path = f"/api/v1/ml/training-data?format=ndjson&split={split}&seed={seed}"
    expected = (await make_datasette(published_db).client.get(path)).text
    with sqlite3.connect(published_copy.path) as conn:
        conn.execute("drop table book_split")
    conn.close()
    client = make_datasette(published_copy).client
    assert (await client.get(path)).text == expected
    page = (await client.get(f"/api/v1/ml/training-data?split={split}&seed={seed}&limit=7&offset=3")).json()
    assert [b["id"] for b in page["books"]] == [json.loads(line)["id"] for line in expected.splitlines()][3:10]


async def test_training_data_pages_follow_cursors_to_the_end(api, published_db):
    streamed = await ids(api, "train", seed=5)
    rows, url = [], "/api/v1/ml/training-data?split=train&seed=5&limit=300"
    while url:
        body = (await api.client.get(url.replace("http://localhost", ""))).json()
        assert body["total"] == len(streamed)
        rows += [b["id"] for b in body["books"]]
        url = body["next"]
        assert url is None or "after=" in url and "offset=" not in url
    assert rows == streamed
    # A stream starts after a cursor too.
    cursor = parse_qs(urlparse(body_after(await api.client.get("/api/v1/ml/training-data?split=train&seed=5&limit=10"))).query)["after"][0]
    assert await ids(api, "train", seed=5, after=cursor) == streamed[10:]


def body_after(response) -> str:
    return response.json()["next"]


@pytest.mark.parametrize("path", ["/api/v1/ml/training-data?format=csv", "/api/v1/ml/features"])
async def test_head_of_a_stream_is_headers_only(api, path):
    response = await api.client.request("HEAD", path)
    assert response.status_code == 200 and response.content == b""


async def test_features_csv_equals_sql(api, published_db):
    response = await api.client.get("/api/v1/ml/features?format=csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = query(published_db.path, FEATURES_SQL)
    assert [{k: str(v) for k, v in row.items()} for row in expected] == rows


async def test_training_data_ndjson_streams_every_book(api, published_db):
    response = await api.client.get("/api/v1/ml/training-data?format=ndjson")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert rows == query(published_db.path, TRAINING_SQL)
    assert set(rows[0]) == set(TRAINING_COLUMNS)


async def test_training_data_csv_has_header_and_every_book(api, published_db):
    response = await api.client.get("/api/v1/ml/training-data?format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == TRAINING_COLUMNS
    expected = query(published_db.path, TRAINING_SQL)
    assert [int(r["id"]) for r in rows] == [r["id"] for r in expected]
    assert [r["title"] for r in rows] == [r["title"] for r in expected]
    assert [float(r["price"]) for r in rows] == [r["price"] for r in expected]


async def ids(api, split, **params):
    query_string = "&".join(f"{k}={v}" for k, v in {"format": "ndjson", "split": split, **params}.items())
    response = await api.client.get(f"/api/v1/ml/training-data?{query_string}")
    assert response.status_code == 200
    return [json.loads(line)["id"] for line in response.text.splitlines()]


async def test_split_is_deterministic_disjoint_and_complete(api, published_db):
    everything = [r["id"] for r in query(published_db.path, "select id from books order by id")]
    train, test = await ids(api, "train", seed=7, test_size=0.25), await ids(api, "test", seed=7, test_size=0.25)
    assert not set(train) & set(test)
    assert sorted(train + test) == everything
    assert 0.15 < len(test) / len(everything) < 0.35
    assert await ids(api, "test", seed=7, test_size=0.25) == test
    assert await ids(api, "test", seed=8, test_size=0.25) != test
    assert await ids(api, "test", test_size=0) == []


async def test_training_data_json_pages_agree_with_the_stream(api):
    streamed = await ids(api, "test", seed=3)
    body = (await api.client.get("/api/v1/ml/training-data?split=test&seed=3&limit=1000")).json()
    assert body["total"] == len(streamed)
    assert [b["id"] for b in body["books"]] == streamed
    assert body["split"] == {"split": "test", "test_size": 0.2, "seed": 3}
    second = (await api.client.get("/api/v1/ml/training-data?limit=5&offset=5")).json()
    assert [b["id"] for b in second["books"]] == (await ids(api, "all"))[5:10]


def sha256_fraction(seed: int, book_id: int) -> float:
    """Where a book falls in [0, 1) as the split documents it, worked out here on its own: the first
    8 bytes of sha256("{seed}:{id}") as a big-endian integer over 2**64. The same in every process,
    unlike Python's hash() of a string."""
    digest = hashlib.sha256(f"{seed}:{book_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_test(seed: int, book_id: int, test_size: float) -> bool:
    return sha256_fraction(seed, book_id) < test_size


# (seed, id, fraction) worked out once, so a change of the formula here fails too.
PINNED = [(0, 1, 0.9339), (0, 45, 0.2144), (0, 1000, 0.5083), (7, 2, 0.5530), (7, 3, 0.0668),
          (7, 45, 0.0678), (7, 1000, 0.4124), (42, 1, 0.0151), (42, 10, 0.9841), (42, 1000, 0.1551)]


@pytest.mark.parametrize(
    "seed,book_id,fraction",
    [pytest.param(*row, id=f"book-{row[1]}-with-seed-{row[0]}-falls-at-{row[2]}") for row in PINNED],
)
def test_a_books_side_of_the_split_is_pinned_to_sha256_of_seed_and_id(seed, book_id, fraction):
    assert sha256_fraction(seed, book_id) == pytest.approx(fraction, abs=5e-5)
    for test_size in (0.0, 0.1, 0.2, 0.5, 0.9, 1.0):
        assert in_test_split(book_id, seed, test_size) is (fraction < test_size), test_size


@pytest.mark.parametrize(
    "output",
    [pytest.param("ndjson", id="streamed-as-ndjson"), pytest.param("json", id="paged-as-json")],
)
@pytest.mark.parametrize(
    "seed,test_size",
    [
        pytest.param(0, 0.2, id="seed-0-a-fifth-held-out"),
        pytest.param(7, 0.25, id="seed-7-a-quarter-held-out"),
        pytest.param(42, 0.5, id="seed-42-half-held-out"),
    ],
)
async def test_the_served_split_is_the_sha256_split(api, published_db, seed, test_size, output):
    everything = [r["id"] for r in query(published_db.path, "select id from books order by id")]
    expected_test = [book_id for book_id in everything if in_test(seed, book_id, test_size)]
    expected_train = [book_id for book_id in everything if not in_test(seed, book_id, test_size)]
    for split, expected in (("test", expected_test), ("train", expected_train)):
        path = f"/api/v1/ml/training-data?split={split}&seed={seed}&test_size={test_size}"
        if output == "json":
            body = (await api.client.get(f"{path}&limit=1000")).json()
            assert body["total"] == len(expected)
            assert [b["id"] for b in body["books"]] == expected[:1000]
        else:
            assert await ids(api, split, seed=seed, test_size=test_size) == expected
    assert expected_test and expected_train


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/v1/ml/features?format=xml", 400, "bad_parameter"),
        ("/api/v1/ml/features?limit=0", 400, "bad_parameter"),
        ("/api/v1/ml/training-data?format=parquet", 400, "bad_parameter"),
        ("/api/v1/ml/training-data?split=validation", 400, "bad_parameter"),
        ("/api/v1/ml/training-data?test_size=1.5", 400, "bad_parameter"),
        ("/api/v1/ml/training-data?test_size=half", 400, "bad_parameter"),
        ("/api/v1/ml/training-data?seed=x", 400, "bad_parameter"),
        ("/api/v1/ml/training-data?limit=5000", 400, "bad_parameter"),
        ("/api/v1/ml/training-data?after=nonsense", 400, "bad_parameter"),
        ("/api/v1/ml/features?after=abc.def", 400, "bad_parameter"),
        ("/api/v1/ml/nothing", 404, "not_found"),
    ],
)
async def test_bad_input_is_a_json_error(api, path, status, code):
    assert_error(await api.client.get(path), status, code)


@pytest.mark.parametrize("path", ["/api/v1/ml/features", "/api/v1/ml/training-data"])
async def test_post_is_405(api, path):
    assert_error(await api.client.post(path, json=[]), 405, "method_not_allowed")


def python_csv(rows: list[dict]) -> str:
    """The CSV Python's csv module writes for these rows, header first: what the routes answered
    before SQLite wrote the lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(rows[0]))
    writer.writerows(list(row.values()) for row in rows)
    return buffer.getvalue()


async def test_the_csv_is_byte_for_byte_what_pythons_csv_module_writes(api, published_db):
    training = await api.client.get("/api/v1/ml/training-data?format=csv")
    assert training.text == python_csv(query(published_db.path, TRAINING_SQL))
    features = await api.client.get("/api/v1/ml/features?format=csv")
    assert features.text == python_csv(query(published_db.path, FEATURES_SQL))


async def test_awkward_text_survives_csv_and_json(published_copy, api_env):
    """Quotes, commas, line breaks, non-ASCII and control characters in a title, and a missing value."""
    title = 'He said "no", then\nleft,\r\ttabbed — café \x01 end'
    with sqlite3.connect(published_copy.path) as conn:
        book_id = conn.execute("select min(id) from books").fetchone()[0]
        conn.execute("update books set title = ?, description = null where id = ?", [title, book_id])
    conn.close()
    client = make_datasette(published_copy).client
    rows = list(csv.DictReader(io.StringIO((await client.get("/api/v1/ml/training-data?format=csv&limit=1")).text)))
    assert rows[0]["title"] == title and rows[0]["description"] == ""
    line = (await client.get("/api/v1/ml/training-data?format=ndjson&limit=1")).text
    assert json.loads(line)["title"] == title and json.loads(line)["description"] is None
    assert (await client.get("/api/v1/ml/training-data?format=csv")).text == python_csv(query(published_copy.path, TRAINING_SQL))
