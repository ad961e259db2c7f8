"""The ML exports through the real server (`python -m books_scraper.serve`) on a catalogue larger
than any socket buffer: complete when read to the end, stopped when the client goes, and SIGTERM
still stops the server in the middle of one."""

from __future__ import annotations

import csv
import io
import json
import re
import socket
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from serving import ServeProcess, alive, publication
from sqlite_utils import Database
from support import query, wait_until

from books_scraper import storage
from books_scraper.api.ml import FEATURE_COLUMNS
from books_scraper.api.web import COUNT_CAP

COPIES = 20  # ~20,000 books: some 36 MB of training CSV


@pytest.fixture(scope="module")
def catalogue(published_db, tmp_path_factory) -> tuple[Path, Path]:
    """The published books copied COPIES times with new ids and UPCs, shaped as a publication."""
    workdir = tmp_path_factory.mktemp("ml-streams")
    books = workdir / "books.db"
    books.write_bytes(published_db.path.read_bytes())
    columns = ", ".join(storage.BOOK_COLUMNS)
    copied = ", ".join(
        "id + :k * :step" if c == "id" else "upc || '-' || :k" if c == "upc" else c for c in storage.BOOK_COLUMNS
    )
    with sqlite3.connect(books) as conn:
        top = conn.execute("select max(id) from books").fetchone()[0]
        for k in range(1, COPIES):
            conn.execute(
                f"insert into books ({columns}) select {copied} from books where id <= :top",
                {"k": k, "step": 10 ** len(str(top)), "top": top},
            )
    conn.close()
    storage.ensure_db_shape(Database(books))
    ops = workdir / "operations.db"
    ops.write_bytes(published_db.operations_path.read_bytes())
    return books, ops


@pytest.fixture(scope="module")
def server(catalogue, tmp_path_factory):
    """One server on the catalogue for the tests that leave it running (each reads only its own log lines)."""
    books, ops = catalogue
    with ServeProcess(books, ops, tmp_path_factory.mktemp("ml-streams-serve") / "serve.log") as server:
        yield server


def log_lines_after(server: ServeProcess, offset: int, text: str) -> list[str]:
    """The server's log lines holding `text`, written past `offset` bytes (by this test, not an earlier one)."""
    server.output()  # flushes it
    return [line for line in server.log.read_bytes()[offset:].decode(errors="replace").splitlines() if text in line]


def get(server: ServeProcess, path: str) -> bytes:
    with urllib.request.urlopen(server.url + path.lstrip("/"), timeout=120) as response:
        assert response.status == 200
        return response.read()


def stalled_download(server: ServeProcess, path: str) -> socket.socket:
    """A client that asks for `path`, reads the first bytes of the answer and then nothing more."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    return sock



def test_the_exports_are_complete_through_the_server(catalogue, server):
    books, _ = catalogue
    ids = [row["id"] for row in query(books, "select id from books order by id")]
    rows = list(csv.DictReader(io.StringIO(get(server, "/api/v1/ml/training-data?format=csv").decode())))
    assert [int(row["id"]) for row in rows] == ids
    lines = get(server, "/api/v1/ml/training-data?format=ndjson&split=test").decode().splitlines()
    test_ids = [json.loads(line)["id"] for line in lines]
    assert test_ids == [r["book_id"] for r in query(books, "select book_id from book_split where fraction < 0.2 order by book_id")]
    body = json.loads(get(server, "/api/v1/ml/features"))
    assert [row["id"] for row in body["features"]] == ids and body["total"] == len(ids)
    assert list(body)[0] == "features" and body["next"] is None and body["offset"] == 0
    assert list(body["features"][0]) == FEATURE_COLUMNS
    rows = list(csv.DictReader(io.StringIO(get(server, "/api/v1/ml/features?format=csv").decode())))
    assert [int(row["id"]) for row in rows] == ids


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/api/v1/ml/training-data?format=csv", id="training-data-csv"),
        pytest.param("/api/v1/ml/training-data?format=ndjson&split=train&seed=7", id="training-data-ndjson-other-seed"),
    ],
)
def test_a_client_that_goes_away_stops_the_stream(catalogue, server, path):
    books, _ = catalogue
    total = len(query(books, "select id from books"))
    offset = len(server.log.read_bytes())
    stalled_download(server, path).close()
    lines = wait_until(lambda: log_lines_after(server, offset, "the client went away"), why=server.output)
    assert path.split("?")[0] in lines[0]
    sent = int(re.search(r"went away after ([0-9]+) rows", lines[0]).group(1))
    assert sent < total
    # The server goes on answering.
    assert json.loads(get(server, "/api/v1/health"))["status"]


def test_sigterm_stops_the_server_in_the_middle_of_a_stream(catalogue, tmp_path):
    books, ops = catalogue
    with ServeProcess(books, ops, tmp_path / "serve.log") as server:
        workers = server.workers()
        sock = stalled_download(server, "/api/v1/ml/training-data?format=csv")
        try:
            server.process.terminate()
            server.process.wait(timeout=60)  # raises if it is still running then
            wait_until(lambda: not any(alive(pid) for pid in workers), why=lambda: f"workers {workers} alive")
        finally:
            sock.close()


async def test_a_computed_split_counts_up_to_the_cap(catalogue):
    """A seed other than book_split's is hashed per book: its total stops at COUNT_CAP, said not exact."""
    books, ops = catalogue
    client = publication(books, ops).client
    body = (await client.get("/api/v1/ml/training-data?split=train&seed=7&limit=5")).json()
    assert body["total"] == COUNT_CAP and body["total_exact"] is False and len(body["books"]) == 5
    stored = (await client.get("/api/v1/ml/training-data?split=train&limit=5")).json()
    expected = query(books, "select count(*) as n from book_split where fraction >= 0.2")[0]["n"]
    assert expected > COUNT_CAP and stored["total"] == expected and stored["total_exact"] is True


def test_a_dropped_datasette_csv_export_stops_too(catalogue, server):
    """Datasette's own streamed CSV never reads `receive`: web/client_gone.py stops it for it."""
    books, _ = catalogue
    path = "/books/books.csv?_stream=on"
    offset = len(server.log.read_bytes())
    stalled_download(server, path).close()

    def logged(text):
        return lambda: log_lines_after(server, offset, text)

    wait_until(logged("/books/books.csv: the client went away; the CSV stream stopped"), why=server.output)
    [request] = wait_until(logged("GET /books/books.csv 200"), why=server.output)
    sent = int(re.search(r" ([0-9]+)B ", request).group(1))
    whole = get(server, path)
    assert sent < len(whole) and whole.count(b"\n") > len(query(books, "select id from books"))
    assert "Traceback" not in server.log.read_text()
