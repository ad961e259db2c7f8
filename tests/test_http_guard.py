"""Every answer carries the security headers; a malformed Authorization header is a 401, never a 500."""

from __future__ import annotations

import socket

import pytest
from api_support import TOKENS, assert_error
from serving import ServeProcess, publication

NON_ASCII_TOKENS = [
    pytest.param("Bearer caf\u00e9".encode(), id="utf-8-letter-in-a-bearer-token"),
    pytest.param(b"Bearer \xff\xfe", id="bytes-that-are-not-utf-8"),
    pytest.param(b"Bearer abc\x01def", id="control-character"),
    pytest.param("Bearer " .encode() + TOKENS["ml"].encode() + "\u00e9".encode(), id="valid-token-with-a-non-ascii-suffix"),
]
PATHS = [
    pytest.param("/api/v1/health", "json", id="api-health"),
    pytest.param("/api/v1/books?limit=1", "json", id="api-books"),
    pytest.param("/books/books.json", "json", id="datasette-table-json"),
    pytest.param("/books/books", "text", id="datasette-table-page"),
    pytest.param("/", "text", id="home-page"),
    pytest.param("/-/versions.json", "json", id="datasette-versions"),
]


@pytest.mark.parametrize("header", NON_ASCII_TOKENS)
@pytest.mark.parametrize("path,kind", PATHS)
async def test_a_non_ascii_authorization_header_is_a_401(api, header, path, kind):
    response = await api.client.get(path, headers=[(b"authorization", header)])
    if kind == "json":
        body = assert_error(response, 401, "invalid_token")
        assert "Authorization header is malformed" in body["error"]
    else:
        assert response.status_code == 401
        assert "Authorization header is malformed" in response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_a_malformed_header_cannot_post_predictions(writable_api):
    ds, _ = writable_api
    response = await ds.client.post(
        "/api/v1/ml/predictions", json=[{"id": 1, "predicted_rating": 3}],
        headers=[(b"authorization", "Bearer caf\u00e9".encode())],
    )
    assert_error(response, 401, "invalid_token")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/", id="home-page"),
        pytest.param("/books/books", id="table-page"),
        pytest.param("/books/books.json", id="table-json"),
        pytest.param("/books.json?sql=select+1", id="sql-json"),
        pytest.param("/books/books.csv", id="table-csv"),
        pytest.param("/api/v1/books?limit=1", id="api-list"),
        pytest.param("/api/v1/no-such-route", id="api-404"),
        pytest.param("/no/such/page", id="datasette-404"),
        pytest.param("/-/static/app.css", id="static-file"),
    ],
)
async def test_every_answer_has_the_security_headers(api, path):
    response = await api.client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-eval" not in policy


async def test_only_the_dashboards_may_evaluate_code(published_db):
    # Vega compiles chart expressions with Function(): the one place that needs it.
    ds = publication(published_db.path, published_db.operations_path)
    response = await ds.client.get("/-/dashboards/books")
    assert response.status_code == 200
    assert "'unsafe-eval'" in response.headers["content-security-policy"]


async def test_static_files_are_cached_and_nothing_else_is(published_db):
    """The dashboards' ~1 MB of Vega was fetched again on every visit: static files now carry a
    cache lifetime; pages, JSON and 404s do not."""
    ds = publication(published_db.path, published_db.operations_path)
    page = await ds.client.get("/-/dashboards/books")
    scripts = [f"/-/static-plugins/{path}" for path in page.text.split('src="/-/static-plugins/')[1:]]
    scripts = [path.split('"')[0] for path in scripts]
    assert scripts, "the dashboard page loads the plugin's scripts"
    for path in ["/-/static/app.css", *scripts]:
        response = await ds.client.get(path)
        assert response.status_code == 200 and response.headers["cache-control"] == "public, max-age=3600", path
    for path in ["/-/dashboards/books", "/books/books.json", "/api/v1/books?limit=1", "/-/static/no-such-file.css"]:
        response = await ds.client.get(path)
        assert "max-age=3600" not in response.headers.get("cache-control", ""), path


def raw_get(port: int, path: str, header: bytes) -> bytes:
    """One HTTP/1.1 request with a header value sent byte for byte, as curl $'...' does."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                     + header + b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_the_real_server_answers_401_to_a_non_ascii_token(published_db, tmp_path):
    with ServeProcess(published_db.path, published_db.operations_path, tmp_path / "serve.log") as server:
        for path in ("/api/v1/health", "/books/books.json", "/books/books"):
            answer = raw_get(server.port, path, "Bearer caf\u00e9".encode())
            assert answer.startswith(b"HTTP/1.1 401 "), answer[:300]
        assert "Traceback" not in server.output()
