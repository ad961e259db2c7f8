"""/api/v1/openapi.json validates as OpenAPI 3, describes exactly the routes the plugins register, and
every GET's real answer validates against the schema it describes."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from datasette.plugins import pm
from api_support import TOKENS, assert_error, bearer, value
from openapi_schema_validator import OAS30Validator
from openapi_schema_validator import validate as validate_body
from openapi_spec_validator import validate

from books_scraper.api.params import CURSOR, QUERIES

HTTP_METHODS = {"get", "post", "put", "delete", "patch"}
EXAMPLE_QUERIES = {"/api/v1/books/search": "?title=a"}


def route_template(pattern: str) -> str:
    """'^/api/v1/books/(?P<id>\\d{1,18})$' -> '/api/v1/books/{id}'."""
    path = pattern.removeprefix("^").removesuffix("$").replace("\\.", ".")
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path)


def registered_api_routes(datasette) -> set[tuple[str, str]]:
    routes = set()
    for plugin_routes in pm.hook.register_routes(datasette=datasette):
        for pattern, view in plugin_routes or []:
            pattern = pattern if isinstance(pattern, str) else pattern.pattern
            if pattern.startswith("^/api/v1") and getattr(view, "documented", True):
                routes |= {(route_template(pattern), method.lower()) for method in view.methods}
    return routes


async def test_openapi_document_validates(api):
    response = await api.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    validate(response.json())


async def test_openapi_lists_every_registered_route_and_no_other(api):
    await api.invoke_startup()
    document = (await api.client.get("/api/v1/openapi.json")).json()
    described = {
        (path, method) for path, item in document["paths"].items() for method in item if method in HTTP_METHODS
    }
    registered = registered_api_routes(api)
    assert registered == described
    # The Flask-compatible paths are all there.
    for path in ["/api/v1/books", "/api/v1/books/{id}", "/api/v1/books/search", "/api/v1/books/top-rated",
                 "/api/v1/books/price-range", "/api/v1/categories", "/api/v1/stats/overview",
                 "/api/v1/stats/categories", "/api/v1/ml/features", "/api/v1/ml/training-data",
                 "/api/v1/ml/predictions", "/api/v1/ml/predictions/summary", "/api/v1/health",
                 "/api/v1/auth/login", "/api/v1/auth/refresh", "/api/v1/openapi.json"]:
        assert path in document["paths"]


async def described_gets(ds, book_id: int) -> list[tuple[str, dict]]:
    """(URL, 200 JSON schema) of every described public GET answering JSON, the schema carrying the
    document's components (the protected ones, /api/v1/scraping/*, answer a real job in
    tests/test_jobs.py; the HTML reference page is tests/test_api_reference.py's)."""
    document = (await ds.client.get("/api/v1/openapi.json")).json()
    gets = []
    for path, item in document["paths"].items():
        answers = item.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
        if "application/json" in answers and "security" not in item["get"]:
            url = path.replace("{id}", str(book_id)) + EXAMPLE_QUERIES.get(path, "")
            schema = item["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            gets.append((url, {**schema, "components": document["components"]}))
    return gets


async def test_every_described_get_answers_as_described(writable_api):
    ds, published = writable_api
    book_id = value(published.path, "select min(id) from books")
    # A stored batch, so the prediction routes have rows to describe.
    batch = {"model": "m", "predictions": [{"id": book_id, "predicted_rating": 4.5}]}
    assert (await ds.client.post("/api/v1/ml/predictions", json=batch, headers=bearer(TOKENS["ml"]))).status_code == 201
    for url, schema in await described_gets(ds, book_id):
        response = await ds.client.get(url)
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-type"].startswith("application/json"), url
        body = response.json()
        assert body, url
        validate_body(body, schema, cls=OAS30Validator)


async def test_head_answers_wherever_get_does(api, published_db):
    for url, _ in await described_gets(api, value(published_db.path, "select min(id) from books")):
        get, head = await api.client.get(url), await api.client.head(url)
        assert (head.status_code, get.status_code) == (200, 200), (url, head.text)
        assert head.headers["content-type"] == get.headers["content-type"], url


async def test_error_responses_are_the_envelope(api):
    document = (await api.client.get("/api/v1/openapi.json")).json()
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["ok", "status", "error", "error_code"]
    assert document["paths"]["/api/v1/ml/predictions"]["post"]["security"] == [{"bearer": []}]


def bad_values(schema: dict) -> list[str]:
    """Values just outside what a declared parameter's schema admits."""
    if "enum" in schema:
        return ["not-one-of-them"]
    if schema["type"] == "boolean":
        return ["yes", "1", "TRUE"]
    if schema["type"] == "string":
        values = ["x" * (schema["maxLength"] + 1)]
        return values + (["-"] if "pattern" in schema else [])
    values = ["x", " 1", "1_0", "nan", "inf"]
    if schema["type"] == "integer":
        values += ["1.5", "+1", "١"]  # Arabic-Indic one: int() takes it, the schema does not
    if "minimum" in schema:
        values.append(str(schema["minimum"] - 1))
    if "maximum" in schema:
        values.append(str(schema["maximum"] + 1))
    return values


def edge_values(schema: dict) -> list[str]:
    """Values a declared parameter's schema admits, at its edges."""
    if "enum" in schema:
        return list(schema["enum"])
    if schema["type"] == "boolean":
        return ["true", "false"]
    if schema["type"] == "string":
        return ["", "a"]
    return ["", *(str(schema[key]) for key in ("minimum", "maximum") if key in schema)]


DECLARED = [
    pytest.param(path, param, id=f"{path.removeprefix('/api/v1/')}?{param.name}")
    for path, query in QUERIES.items()
    for param in query.params
]


async def test_the_document_describes_each_route_by_its_declaration(api):
    document = (await api.client.get("/api/v1/openapi.json")).json()
    for path, query in QUERIES.items():
        assert document["paths"][path]["get"]["parameters"] == query.openapi(), path


@pytest.mark.parametrize("path,param", DECLARED)
async def test_each_declared_parameter_is_enforced_as_described(api, path, param):
    """The view parses with the same declaration the document shows: outside the schema is a 400
    naming the parameter, at its edges is accepted."""
    # The search's rule (title or category) kept by the other parameter.
    others = [("category" if param.name == "title" else "title", "a")] if path.endswith("/search") else []
    # The scraping jobs are the admin's to read.
    auth = bearer(TOKENS["admin"]) if path.startswith("/api/v1/scraping/") else None
    for bad in bad_values(param.schema):
        response = await api.client.get(path, params=[*others, (param.name, bad)], headers=auth)
        assert response.status_code == 400, (bad, response.status_code)
        body = assert_error(response, 400, "bad_parameter")
        assert body["details"]["parameter"] == param.name, (bad, body)
    good_values = edge_values(param.schema)
    if param.name == CURSOR:  # the pattern admits any cursor-shaped text; only the route's own are good
        first = (await api.client.get(path, params=[*others, ("limit", "1")], headers=auth)).json()
        good_values = [""]
        if first["next"]:  # a list with rows to page through (the served predictions may be none)
            good_values.append(parse_qs(urlsplit(first["next"]).query)[CURSOR][0])
    for good in good_values:
        response = await api.client.get(path, params=[*others, (param.name, good)], headers=auth)
        assert response.status_code == 200, (good, response.text[:300])


@pytest.mark.parametrize(
    "path,output",
    [
        pytest.param("/api/v1/ml/features", "csv", id="features-csv"),
        pytest.param("/api/v1/ml/training-data", "csv", id="training-data-csv"),
        pytest.param("/api/v1/ml/training-data", "ndjson", id="training-data-ndjson"),
    ],
)
async def test_streams_validate_and_honour_limit_and_offset_like_json(api, path, output):
    for bad in ["limit=-610", "limit=0", "offset=-1", "limit=x", "offset=1.5"]:
        assert_error(await api.client.get(f"{path}?format={output}&{bad}"), 400, "bad_parameter")
    page = (await api.client.get(f"{path}?limit=3&offset=2")).json()
    ids = [row["id"] for row in page["features" if path.endswith("features") else "books"]]
    response = await api.client.get(f"{path}?format={output}&limit=3&offset=2")
    assert response.status_code == 200
    lines = response.text.splitlines()
    if output == "csv":
        streamed = [int(line.split(",")[0]) for line in lines[1:]]
    else:
        streamed = [json.loads(line)["id"] for line in lines]
    assert streamed == ids and len(ids) == 3


async def test_a_model_name_ends_where_the_text_ends(writable_api):
    """Python's `$` also matches before a final newline; the document's (ECMA) `$` does not."""
    ds, published = writable_api
    book_id = value(published.path, "select min(id) from books")
    batch = {"model": "m1\n", "predictions": [{"id": book_id, "predicted_rating": 3}]}
    response = await ds.client.post("/api/v1/ml/predictions", json=batch, headers=bearer(TOKENS["ml"]))
    assert_error(response, 422, "invalid_model")
    assert_error(await ds.client.get("/api/v1/ml/predictions?model=m1%0A"), 400, "bad_parameter")
