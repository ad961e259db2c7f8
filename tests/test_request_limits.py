"""Requests past a limit, as an attacker sends them: a ?sql= or a value longer than SQLite takes
(query_limits.MAX_VALUE_BYTES) is a 400 that names the limit without echoing the request, and a
request head past what a worker reads (worker.MAX_REQUEST_HEAD_BYTES) gets uvicorn's own refusal.
Every JSON error of a Datasette page carries an error_code (docs/publication.md, "Malformed requests")."""

from __future__ import annotations

import socket
import time
from urllib.parse import quote

import pytest
from serving import ServeProcess, publication

from books_scraper.web.query_limits import MAX_VALUE_BYTES
from books_scraper.web.worker import MAX_REQUEST_HEAD_BYTES

LIMIT_SAID = f"over the limit of {MAX_VALUE_BYTES:,} bytes (SQLITE_LIMIT_LENGTH)"
FILLER = "a" * 100  # what the refused SQL is made of: never seen again in the answer


def sql_of(size: int) -> str:
    """A query of exactly `size` bytes whose bulk is one string literal (SQLite's own refusal)."""
    head = "select '"
    return head + "a" * (size - len(head) - 1) + "'"


@pytest.fixture(scope="module")
def ds(published_db):
    return publication(published_db.path, published_db.operations_path)


async def test_sql_over_the_limit_is_a_short_json_400_naming_it(ds):
    response = await ds.client.get("/books.json?sql=" + quote(sql_of(MAX_VALUE_BYTES + 1)))
    assert response.status_code == 400
    assert response.json() == {
        "ok": False, "status": 400, "title": "SQL too long", "error_code": "sql_too_long",
        "error": f"The SQL is {MAX_VALUE_BYTES + 1:,} bytes, {LIMIT_SAID}",
    }


async def test_sql_over_the_limit_is_an_html_400_naming_it_without_echoing_it(ds):
    response = await ds.client.get("/books?sql=" + quote(sql_of(MAX_VALUE_BYTES * 2)))
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    assert f"The SQL is {MAX_VALUE_BYTES * 2:,} bytes, {LIMIT_SAID}" in response.text
    assert FILLER not in response.text and len(response.text) < 5_000


async def test_sql_at_the_limit_still_runs(ds):
    sql = "select 1 as n -- "
    sql += "x" * (MAX_VALUE_BYTES - len(sql))
    assert len(sql.encode()) == MAX_VALUE_BYTES
    response = await ds.client.get("/books.json?_shape=array&sql=" + quote(sql))
    assert response.status_code == 200 and response.json() == [{"n": 1}]


@pytest.mark.parametrize(
    "path,message",
    [
        pytest.param("/books/books.json?title={big}", "The value of title", id="a-column-filter"),
        pytest.param("/books/books.json?_search={big}", "The value of _search", id="a-table-search"),
        pytest.param("/books/books.json?_where={big}", "The value of _where", id="a-where-clause"),
        pytest.param("/books/books_in_price_range.json?min_price={big}", "The value of min_price", id="a-canned-query-parameter"),
        pytest.param("/books.json?sql=select+:p&p={big}", "The value of p", id="a-sql-parameter"),
        pytest.param("/books/books.json?{big}=1", "A parameter name", id="a-parameter-name"),
    ],
)
async def test_a_value_over_the_limit_is_a_400_not_a_500(ds, path, message):
    size = MAX_VALUE_BYTES + 10
    response = await ds.client.get(path.format(big="a" * size))
    assert response.status_code == 400, response.text[:300]
    body = response.json()
    assert body["error"].startswith(f"{message} is {size:,} bytes, {LIMIT_SAID}")
    assert body["error_code"] == "value_too_long" and FILLER not in response.text


RECURSIVE = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"


@pytest.mark.parametrize(
    "method,path,status,code",
    [
        pytest.param("GET", "/books/no_such_table.json", 404, "not_found", id="datasettes-own-no-such-table"),
        pytest.param("GET", "/no_such_database.json", 404, "not_found", id="datasettes-own-no-such-database"),
        pytest.param("POST", "/books/books.json", 405, "method_not_allowed", id="a-post-to-a-table"),
        pytest.param("GET", "/books/books.json?_sort=no_such_column", 400, "bad_parameter", id="a-bad-sort"),
        pytest.param("GET", "/books.json?sql=select+1&_shape=objectx", 400, "bad_parameter", id="a-bad-shape"),
        pytest.param("GET", "/books.json?sql=select+1&_timelimit=soon", 400, "bad_parameter", id="a-bad-time-limit"),
        pytest.param("GET", "/books.json?sql=select+nonsense", 400, "query_failed", id="a-failing-sql-query"),
        pytest.param("GET", "/books/books.json?_where=nonsense(", 400, "query_failed", id="a-failing-where-clause"),
        pytest.param("GET", "/books.json?sql=" + quote(RECURSIVE) + "&_timelimit=20", 400, "query_timeout", id="a-query-past-its-time-limit"),
    ],
)
async def test_every_json_error_of_a_datasette_page_has_an_error_code(ds, method, path, status, code):
    response = await ds.client.request(method, path)
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert body["ok"] is False and body["error_code"] == code and body["error"]


async def test_an_html_error_page_is_left_as_datasette_makes_it(ds):
    response = await ds.client.get("/books/no_such_table")
    assert response.status_code == 404 and "error_code" not in response.text


async def test_a_json_answer_that_worked_is_left_as_it_was(ds):
    response = await ds.client.get("/books.json?sql=select+1+as+n&_shape=array")
    assert response.status_code == 200 and response.json() == [{"n": 1}]


# --- The real server, over a raw socket -----------------------------------------------------------


def exchange(port: int, target: bytes, piece: int = 1000, finish: bool = True) -> bytes:
    """Send a GET of `target` in pieces of `piece` bytes, as a network delivers a long request (so
    the worker reads it in many parts), then read until the server closes. With finish=False only
    the request line's start is sent: the server has read everything sent when it answers."""
    request = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    if not finish:
        request = request[: len(target)]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for start in range(0, len(request), piece):
            sock.sendall(request[start : start + piece])
            time.sleep(0.001)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_and_body(answer: bytes) -> tuple[bytes, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


@pytest.fixture(scope="module")
def server(published_db, tmp_path_factory):
    log = tmp_path_factory.mktemp("limits") / "serve.log"
    with ServeProcess(published_db.path, published_db.operations_path, log) as server:
        yield server


def test_the_real_server_answers_sql_over_the_limit_sent_in_pieces(server):
    """A ?sql= just past the limit is a URL of about 32 KB, over h11's default 16 KiB: it reaches
    Datasette whole however it arrives, and gets the limit's 400."""
    answer = exchange(server.port, b"/books.json?sql=" + quote(sql_of(MAX_VALUE_BYTES + 1)).encode())
    status, body = status_and_body(answer)
    assert status == b"HTTP/1.1 400 Bad Request", answer[:300]
    assert b'"error_code": "sql_too_long"' in body and FILLER.encode() not in body


def test_the_real_server_reads_a_head_up_to_its_limit(server):
    values = [f"p{i}=".encode() + b"p" * 30_000 for i in range(MAX_REQUEST_HEAD_BYTES // 30_100)]
    target = b"/-/versions.json?" + b"&".join(values)
    assert MAX_REQUEST_HEAD_BYTES - 32_000 < len(target) < MAX_REQUEST_HEAD_BYTES - 100
    status, body = status_and_body(exchange(server.port, target, piece=8000))
    assert status == b"HTTP/1.1 200 OK" and b'"datasette": {"version"' in body


def test_past_the_head_limit_uvicorn_refuses_with_a_bare_400_and_closes(server):
    """What docs/operations.md ("Limits") says: none of our code runs. Sent whole, the client is
    usually still sending when the server closes, and sees a reset instead of this answer."""
    # One byte past the limit, and no more: the worker has read all of it when it refuses.
    target = b"/books.json?sql=" + b"x" * (MAX_REQUEST_HEAD_BYTES + 1 - len(b"/books.json?sql="))
    answer = exchange(server.port, target, finish=False)
    status, body = status_and_body(answer)
    assert status == b"HTTP/1.1 400 Bad Request" and body == b"Invalid HTTP request received."
    assert b"Connection: close" in answer
    # and the worker goes on serving
    assert status_and_body(exchange(server.port, b"/-/versions.json"))[0] == b"HTTP/1.1 200 OK"


async def test_a_head_of_a_json_error_says_the_length_of_its_get(ds):
    get = await ds.client.get("/books/no_such_table.json")
    head = await ds.client.request("HEAD", "/books/no_such_table.json")
    assert head.status_code == 404 and head.content == b""
    assert head.headers.get("content-length") in (None, str(len(get.content)))
