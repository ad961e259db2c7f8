"""Every page template is compiled when Datasette starts, and kept in Jinja's bytecode cache between
starts (web/template_cache.py): a page's first view renders without compiling anything."""

from __future__ import annotations

import logging
import tempfile

import pytest
from jinja2 import DictLoader, Environment, FileSystemBytecodeCache
from serving import publication

from books_scraper.web.template_cache import compile_templates


def counting_compiles(env: Environment, monkeypatch) -> list[str]:
    """The names env compiles from now on."""
    compiled, compile = [], env.compile

    def counted(source, name=None, filename=None, *args, **kwargs):
        compiled.append(name)
        return compile(source, name, filename, *args, **kwargs)

    monkeypatch.setattr(env, "compile", counted)
    return compiled


@pytest.mark.asyncio
async def test_pages_render_without_compiling_a_template(published_db, monkeypatch):
    ds = publication(published_db.path, published_db.operations_path)
    await ds.invoke_startup()
    compiled = counting_compiles(ds.jinja_env, monkeypatch)
    pages = ("/", "/books", "/books/books", "/books/books/1", "/books/category_summary", "/-/dashboards/books")
    for path in pages:
        assert (await ds.client.get(path)).status_code == 200, path
    assert (await ds.client.get("/books/no_such_table")).status_code == 404  # the error page
    assert compiled == []
    assert ds.jinja_env.bytecode_cache is not None


def test_a_template_that_does_not_compile_is_logged_and_the_rest_are_cached(tmp_path, monkeypatch, caplog):
    templates = DictLoader({"good.html": "<p>{{ x }}</p>", "bad.html": "{{ x|no_such_filter }}"})
    env = Environment(loader=templates, enable_async=True, bytecode_cache=FileSystemBytecodeCache(str(tmp_path)))
    with caplog.at_level(logging.WARNING):
        assert compile_templates(env) == 1
    assert "template bad.html does not compile" in caplog.text
    assert len(list(tmp_path.glob("*.cache"))) == 1

    later = Environment(loader=templates, enable_async=True, bytecode_cache=FileSystemBytecodeCache(str(tmp_path)))
    compiled = counting_compiles(later, monkeypatch)
    later.get_template("good.html")
    assert compiled == []  # loaded from the cache the first environment wrote


def test_without_a_cache_directory_templates_still_compile(tmp_path, monkeypatch, caplog):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_directory))  # where Jinja makes its directory
    env = Environment(loader=DictLoader({"good.html": "<p>{{ x }}</p>"}), enable_async=True)
    with caplog.at_level(logging.WARNING):
        assert compile_templates(env) == 1
    assert env.bytecode_cache is None
    assert "templates compile on each start: no bytecode cache directory" in caplog.text
