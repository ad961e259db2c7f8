"""/api/v1/ml/predictions (+ /summary): atomic batches, validation naming the row, 413, scoring."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from api_support import TOKENS, api_metadata, assert_error, bearer, make_datasette
from support import query
ML = bearer(TOKENS["ml"])


def stored(ops_path) -> list[dict]:
    return query(ops_path, "select * from predictions order by id")


def book_ids(published, n: int) -> list[int]:
    return [r["id"] for r in query(published.path, "select id from books order by id limit ?", [n])]


async def test_post_stores_the_batch(writable_api):
    ds, published = writable_api
    ids = book_ids(published, 3)
    batch = {"model": "linear-v1", "predictions": [
        {"id": ids[0], "predicted_rating": 4.8}, {"id": ids[1], "predicted_rating": 0},
        {"id": ids[2], "predicted_rating": 5, "title": "extra keys are ignored"},
    ]}
    response = await ds.client.post("/api/v1/ml/predictions", json=batch, headers=ML)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["ok"] is True and body["count"] == 3 and body["model"] == "linear-v1"
    rows = stored(published.operations_path)
    assert [(r["book_id"], r["predicted_rating"]) for r in rows] == [(ids[0], 4.8), (ids[1], 0.0), (ids[2], 5.0)]
    assert {r["batch_id"] for r in rows} == {body["batch_id"]}
    assert {r["model"] for r in rows} == {"linear-v1"}
    assert {r["actor"] for r in rows} == {"ml-service"}
    assert all(r["created_at"] for r in rows)


async def test_a_bare_list_is_the_default_model(writable_api):
    ds, published = writable_api
    ids = book_ids(published, 1)
    response = await ds.client.post("/api/v1/ml/predictions", json=[{"id": ids[0], "predicted_rating": 3}], headers=ML)
    assert response.status_code == 201
    assert stored(published.operations_path)[0]["model"] == "default"


def bad_batches(first: int, second: int, unknown: int) -> list[tuple[str, object, int, str, int | None]]:
    ok = {"id": first, "predicted_rating": 4}
    return [
        ("an id no book has", [ok, {"id": unknown, "predicted_rating": 3}], 422, "unknown_book", 1),
        ("the same id twice", [ok, {"id": second, "predicted_rating": 1}, {"id": first, "predicted_rating": 2}], 422, "duplicate_id", 2),
        ("a rating above 5", [ok, {"id": second, "predicted_rating": 5.01}], 422, "invalid_rating", 1),
        ("a negative rating", [ok, {"id": second, "predicted_rating": -0.1}], 422, "invalid_rating", 1),
        ("a rating as text", [ok, {"id": second, "predicted_rating": "4"}], 422, "invalid_rating", 1),
        ("a rating as a boolean", [ok, {"id": second, "predicted_rating": True}], 422, "invalid_rating", 1),
        ("a row without a rating", [ok, {"id": second}], 422, "invalid_rating", 1),
        ("an id as text", [ok, {"id": str(second), "predicted_rating": 1}], 422, "invalid_id", 1),
        ("a fractional id", [ok, {"id": second + 0.5, "predicted_rating": 1}], 422, "invalid_id", 1),
        ("a row that is not an object", [ok, [second, 1]], 422, "invalid_row", 1),
        ("an empty batch", [], 422, "empty_batch", None),
        ("an object without a predictions list", {"model": "m"}, 422, "invalid_batch", None),
        ("a bare number", 42, 422, "invalid_batch", None),
        ("a model name with a slash", {"model": "../etc", "predictions": [ok]}, 422, "invalid_model", None),
        ("a model name that is not text", {"model": 3, "predictions": [ok]}, 422, "invalid_model", None),
    ]


# The cases' names, for their test ids (the batches themselves need the published ids).
BAD_BATCHES = [name for name, *_ in bad_batches(first=1, second=2, unknown=3)]


@pytest.mark.parametrize("case", [pytest.param(name, id=name.replace(" ", "-")) for name in BAD_BATCHES])
async def test_a_bad_row_rejects_the_whole_batch_and_names_it(writable_api, case):
    ds, published = writable_api
    first, second = book_ids(published, 2)
    unknown = query(published.path, "select max(id) + 1000 as id from books")[0]["id"]
    name, batch, status, code, row = next(c for c in bad_batches(first, second, unknown) if c[0] == case)
    before = stored(published.operations_path)
    response = await ds.client.post("/api/v1/ml/predictions", json=batch, headers=ML)
    body = assert_error(response, status, code)
    if row is not None:
        assert body["details"]["row"] == row and f"row {row}" in body["error"], name
    assert stored(published.operations_path) == before, f"{name}: the table changed"


async def test_invalid_json_is_400(writable_api):
    ds, published = writable_api
    response = await ds.client.post(
        "/api/v1/ml/predictions", content=b"[{'id': 1}", headers={**ML, "content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")
    response = await ds.client.post(
        "/api/v1/ml/predictions", content=b"[" * 5000 + b"]" * 5000, headers={**ML, "content-type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")  # nested too deep for the parser
    response = await ds.client.post(
        "/api/v1/ml/predictions", content=b"[NaN]", headers={**ML, "content-type": "application/json"}
    )
    assert_error(response, 422)
    assert stored(published.operations_path) == []


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", pytest.param(None, id="no-content-type")],
)
async def test_a_json_body_not_sent_as_json_is_415(writable_api, content_type):
    ds, published = writable_api
    body = json.dumps([{"id": book_ids(published, 1)[0], "predicted_rating": 2}])
    headers = {**ML, "content-type": content_type} if content_type else ML
    response = await ds.client.post("/api/v1/ml/predictions", content=body, headers=headers)
    assert_error(response, 415, "unsupported_media_type")
    assert stored(published.operations_path) == []


async def test_body_over_the_byte_limit_is_413(writable_api):
    ds, published = writable_api
    book = book_ids(published, 1)[0]
    padding = [{"id": book, "predicted_rating": 1, "note": "x" * 1000}] * 2100
    response = await ds.client.post("/api/v1/ml/predictions", json=padding, headers=ML)
    assert_error(response, 413, "payload_too_large")
    assert stored(published.operations_path) == []


async def test_too_many_rows_is_413(published_copy, api_env):
    metadata = api_metadata()
    metadata["plugins"]["books-api"]["max_prediction_rows"] = 2
    ds, published = make_datasette(published_copy, metadata), published_copy
    rows = [{"id": i, "predicted_rating": 1} for i in book_ids(published, 3)]
    assert_error(await ds.client.post("/api/v1/ml/predictions", json=rows, headers=ML), 413, "too_many_rows")
    assert (await ds.client.post("/api/v1/ml/predictions", json=rows[:2], headers=ML)).status_code == 201


async def test_list_filters_by_model_and_batch(writable_api):
    ds, published = writable_api
    ids = book_ids(published, 4)
    batches = {}
    for model, chunk in [("a", ids[:2]), ("b", ids[2:]), ("a", ids[1:3])]:
        body = {"model": model, "predictions": [{"id": i, "predicted_rating": 2.5} for i in chunk]}
        response = await ds.client.post("/api/v1/ml/predictions", json=body, headers=ML)
        batches.setdefault(model, []).append(response.json()["batch_id"])
    everything = (await ds.client.get("/api/v1/ml/predictions")).json()
    assert everything["total"] == 6 and everything["predictions"] == stored(published.operations_path)
    only_a = (await ds.client.get("/api/v1/ml/predictions?model=a&limit=3")).json()
    assert only_a["total"] == 4 and len(only_a["predictions"]) == 3 and only_a["next"]
    one_batch = (await ds.client.get(f"/api/v1/ml/predictions?batch={batches['b'][0]}")).json()
    assert [p["book_id"] for p in one_batch["predictions"]] == ids[2:]


async def test_summary_scores_against_actual_ratings(writable_api):
    ds, published = writable_api
    books = query(published.path, "select id, rating from books order by id limit 20")
    guesses = {b["id"]: (b["rating"] + 1.5) % 5 for b in books}
    for model, chosen in [("good", books[:10]), ("other", books[10:])]:
        body = {"model": model, "predictions": [{"id": b["id"], "predicted_rating": guesses[b["id"]]} for b in chosen]}
        assert (await ds.client.post("/api/v1/ml/predictions", json=body, headers=ML)).status_code == 201
    summary = (await ds.client.get("/api/v1/ml/predictions/summary")).json()["models"]
    assert [m["model"] for m in summary] == ["good", "other"]
    for entry, chosen in zip(summary, [books[:10], books[10:]]):
        errors = [guesses[b["id"]] - b["rating"] for b in chosen]
        assert entry["predictions"] == entry["evaluated"] == len(chosen)
        assert entry["batches"] == 1
        assert entry["mae"] == pytest.approx(sum(map(abs, errors)) / len(errors), abs=1e-4)
        assert entry["rmse"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / len(errors)), abs=1e-4)
    only = (await ds.client.get("/api/v1/ml/predictions/summary?model=other")).json()["models"]
    assert only == summary[1:]


@pytest.mark.parametrize(
    "path,status,code",
    [
        ("/api/v1/ml/predictions?limit=0", 400, "bad_parameter"),
        ("/api/v1/ml/predictions?book_id=x", 400, "bad_parameter"),
        ("/api/v1/ml/predictions?offset=-2", 400, "bad_parameter"),
        ("/api/v1/ml/predictions?offset=99999999999999999999", 400, "bad_parameter"),
        ("/api/v1/ml/predictions?book_id=99999999999999999999", 400, "bad_parameter"),
        pytest.param("/api/v1/ml/predictions/summary?model=" + "m" * 300, 400, "bad_parameter",
                     id="a-model-name-over-200-characters"),
        ("/api/v1/ml/predictions/1", 404, "not_found"),
    ],
)
async def test_bad_input_is_a_json_error(writable_api, path, status, code):
    ds, _ = writable_api
    assert_error(await ds.client.get(path), status, code)


async def test_summary_refuses_post(writable_api):
    ds, _ = writable_api
    assert_error(await ds.client.post("/api/v1/ml/predictions/summary", json=[], headers=ML), 405)


async def test_posting_json_with_a_browser_cookie_but_a_token_skips_csrf(writable_api):
    ds, published = writable_api
    ids = book_ids(published, 1)
    response = await ds.client.post(
        "/api/v1/ml/predictions",
        content=json.dumps([{"id": ids[0], "predicted_rating": 2}]),
        headers={**ML, "content-type": "application/json", "cookie": "ds_actor=whatever"},
    )
    assert response.status_code == 201, response.text


def test_save_predictions_writes_whole_rows(tmp_path):
    from books_scraper.operations import open_operations_db, save_predictions

    db = open_operations_db(str(tmp_path / "operations.db"))
    count = save_predictions(
        db, [{"id": 7, "predicted_rating": 4}, {"id": 9, "predicted_rating": 2.5}],
        model="m", batch_id="b1", actor="someone",
    )
    rows = list(db["predictions"].rows)
    created = rows[0]["created_at"]
    assert count == 2 and created
    assert rows == [
        {"id": 1, "batch_id": "b1", "model": "m", "book_id": 7, "predicted_rating": 4.0, "actor": "someone", "created_at": created},
        {"id": 2, "batch_id": "b1", "model": "m", "book_id": 9, "predicted_rating": 2.5, "actor": "someone", "created_at": created},
    ]


def expected_summary(published) -> list[dict]:
    """The summary worked out here from both files, independently of the server."""
    ratings = {r["id"]: r["rating"] for r in query(published.path, "select id, rating from books")}
    models: dict[str, list[dict]] = {}
    for row in stored(published.operations_path):
        models.setdefault(row["model"], []).append(row)
    figures = []
    for model, rows in sorted(models.items()):
        errors = [r["predicted_rating"] - ratings[r["book_id"]] for r in rows if r["book_id"] in ratings]
        figures.append({
            "model": model, "predictions": len(rows), "batches": len({r["batch_id"] for r in rows}),
            "evaluated": len(errors),
            "mae": round(sum(map(abs, errors)) / len(errors), 4) if errors else None,
            "rmse": round(math.sqrt(sum(e * e for e in errors) / len(errors)), 4) if errors else None,
            "last_prediction_at": max(r["created_at"] for r in rows),
        })
    return figures


async def test_the_summary_takes_in_each_new_batch_and_rows_removed_by_hand(writable_api):
    """The summary is kept between requests and extended by the rows added since (or worked out again
    when rows went): after every change it equals the figures worked out from the files."""
    ds, published = writable_api
    ids = book_ids(published, 30)
    summary = "/api/v1/ml/predictions/summary"
    assert (await ds.client.get(summary)).json() == {"models": []}
    for model, chosen, rating in [("a", ids[:10], 4.5), ("b", ids[5:20], 1), ("a", ids[20:], 2.25)]:
        body = {"model": model, "predictions": [{"id": i, "predicted_rating": rating} for i in chosen]}
        assert (await ds.client.post("/api/v1/ml/predictions", json=body, headers=ML)).status_code == 201
        assert (await ds.client.get(summary)).json()["models"] == expected_summary(published)
    # A prediction for a book that is not published (stored by hand) is counted, not evaluated.
    with sqlite3.connect(published.operations_path) as conn:
        conn.execute(
            "insert into predictions (batch_id, model, book_id, predicted_rating, created_at)"
            " values ('by-hand', 'b', 999999999, 3, '2030-01-01T00:00:00+00:00')"
        )
    conn.close()
    models = (await ds.client.get(summary)).json()["models"]
    assert models == expected_summary(published)
    assert models[1]["predictions"] == models[1]["evaluated"] + 1
    with sqlite3.connect(published.operations_path) as conn:
        conn.execute("delete from predictions where id > (select max(id) - 12 from predictions)")
    conn.close()
    assert (await ds.client.get(summary)).json()["models"] == expected_summary(published)
    assert (await ds.client.get(f"{summary}?model=b")).json()["models"] == expected_summary(published)[1:]


async def test_the_summary_is_worked_out_as_the_server_starts(writable_api):
    """Startup reads the stored predictions in the background; the first request then finds them."""
    from books_scraper.api import predictions

    ds, published = writable_api
    ids = book_ids(published, 5)
    with sqlite3.connect(published.operations_path) as conn:
        conn.executemany(
            "insert into predictions (batch_id, model, book_id, predicted_rating, created_at)"
            " values ('stored-before-start', 'm', ?, 2.5, '2026-01-01T00:00:00+00:00')", [(i,) for i in ids]
        )
    conn.close()
    await ds.invoke_startup()
    await predictions._warming[ds]
    [summary] = predictions.summaries.summaries.values()
    assert summary.figures() == expected_summary(published)
    assert (await ds.client.get("/api/v1/ml/predictions/summary")).json()["models"] == expected_summary(published)


async def test_the_list_pages_by_cursor_through_every_row(writable_api):
    ds, published = writable_api
    ids = book_ids(published, 40)
    for model, chosen in [("a", ids[:25]), ("b", ids[10:]), ("a", ids[25:])]:
        body = {"model": model, "predictions": [{"id": i, "predicted_rating": 1.5} for i in chosen]}
        assert (await ds.client.post("/api/v1/ml/predictions", json=body, headers=ML)).status_code == 201
    for query_string, expected in [("", stored(published.operations_path)),
                                   ("model=a&", [r for r in stored(published.operations_path) if r["model"] == "a"])]:
        rows, url = [], f"/api/v1/ml/predictions?{query_string}limit=7"
        while url:
            body = (await ds.client.get(url.replace("http://localhost", ""))).json()
            assert body["total"] == len(expected) and body["total_exact"] is True
            rows += body["predictions"]
            url = body["next"]
            assert url is None or "after=" in url
        assert rows == expected
    assert_error(await ds.client.get("/api/v1/ml/predictions?offset=10001"), 400, "bad_parameter")


async def test_the_dashboards_scores_follow_each_batch(writable_api):
    """After a POST, without anyone asking for the summary, model_scores (which the operations
    dashboard charts) holds the summary against the published books."""
    from books_scraper.api import predictions

    ds, published = writable_api
    ids = book_ids(published, 12)
    books_hash = query(published.path, "select hash from publication")[0]["hash"]
    for model, chosen, rating in [("a", ids[:6], 4.5), ("b", ids[6:], 1), ("a", ids[3:9], 2)]:
        body = {"model": model, "predictions": [{"id": i, "predicted_rating": rating} for i in chosen]}
        assert (await ds.client.post("/api/v1/ml/predictions", json=body, headers=ML)).status_code == 201
        await predictions._warming[ds]
        scores = query(published.operations_path, "select * from model_scores order by model")
        assert {row["books_hash"] for row in scores} == {books_hash}
        assert [
            {**row, "mae": round(row["mae"], 4), "rmse": round(row["rmse"], 4)}
            for row in ({k: r[k] for k in expected_summary(published)[0]} for r in scores)
        ] == expected_summary(published)


async def test_a_restarted_server_carries_on_from_the_stored_scores(writable_api):
    """A new process reads model_scores and then only the predictions stored after them, instead of
    every prediction: shown by stored sums it could not have worked out from the rows."""
    from books_scraper.api import predictions

    ds, published = writable_api
    ids = book_ids(published, 10)
    body = {"model": "a", "predictions": [{"id": i, "predicted_rating": 4} for i in ids[:5]]}
    assert (await ds.client.post("/api/v1/ml/predictions", json=body, headers=ML)).status_code == 201
    await predictions._warming[ds]
    with sqlite3.connect(published.operations_path) as conn:  # sums no reading of the rows gives
        conn.execute("update model_scores set abs_error = 50, squared_error = 500")
    conn.close()
    predictions.summaries.summaries.clear()  # as in a new process
    restarted = make_datasette(published)
    [model] = (await restarted.client.get("/api/v1/ml/predictions/summary")).json()["models"]
    assert (model["predictions"], model["mae"], model["rmse"]) == (5, 10.0, 10.0)
    # and a batch stored since is added to them
    body = {"model": "a", "predictions": [{"id": i, "predicted_rating": 4} for i in ids[5:]]}
    assert (await restarted.client.post("/api/v1/ml/predictions", json=body, headers=ML)).status_code == 201
    [model] = (await restarted.client.get("/api/v1/ml/predictions/summary")).json()["models"]
    errors = [4 - r["rating"] for r in query(published.path, "select rating from books where id in (%s)"
                                               % ",".join(map(str, ids[5:])))]
    assert model["predictions"] == 10 and model["mae"] == round((50 + sum(map(abs, errors))) / 10, 4)
