"""The private names books_scraper/web/datasette_internals.py relies on are still there, and the
workarounds work (the malformed-request ones: test_datasette_fuzz.py)."""

from __future__ import annotations

import inspect
import urllib.error
import urllib.request

import datasette.handle_exception
from datasette.app import Datasette
from serving import ServeProcess

from books_scraper.web.datasette_internals import pop_local_metadata

SECRET = "Bearer tok-that-must-never-be-logged-0123456789"


def test_datasettes_exception_hook_still_reads_a_module_level_rich():
    # If this fails, Datasette changed how it prints exceptions: revisit datasette_internals.no_rich_tracebacks.
    assert "rich" in vars(datasette.handle_exception)
    assert "rich.get_console().print_exception" in open(datasette.handle_exception.__file__).read()


def get(url: str, **headers: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_error_answers_do_not_log_the_request_headers(published_db, tmp_path):
    with ServeProcess(published_db.path, published_db.operations_path, tmp_path / "serve.log") as server:
        assert get(server.url + "books/no_such_table", Authorization=SECRET) == 404
        assert get(server.url + "books.json?sql=delete+from+books", Authorization=SECRET) == 400
        assert get(server.url + "books/books.json?_sort=description", Authorization=SECRET) == 400
        server.output()  # flushes the log
        log = server.log.read_text(errors="replace")
    assert "tok-that-must-never-be-logged" not in log
    assert "Traceback" not in log


def test_datasette_still_deep_copies_its_local_metadata_per_table_check():
    # If this fails, Datasette changed how it keeps or copies metadata: revisit web/plugin_metadata.py.
    source = inspect.getsource(Datasette._table_permission_allows)
    assert 'self._metadata_sources("tables"' in source and "copy.deepcopy(source)" in source
    assert "yield self._metadata_local" in inspect.getsource(Datasette._metadata_sources)
    given = {"title": "t", "plugins": {"p": {"a": 1}}}
    ds = Datasette(memory=True, metadata=given)
    assert pop_local_metadata(ds, "plugins") == {"p": {"a": 1}}
    assert ds._metadata_local == {"title": "t"}
    assert given == {"title": "t", "plugins": {"p": {"a": 1}}}  # the caller's dict untouched
    assert pop_local_metadata(ds, "plugins") is None
