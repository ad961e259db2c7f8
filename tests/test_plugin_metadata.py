"""The plugins' configuration is served by a get_metadata hook, out of the metadata Datasette
deep-copies on every table permission check (web/plugin_metadata.py); everything reads it as before."""

from __future__ import annotations

import copy
import os

from serving import publication

from books_scraper.web.plugin_metadata import plugin_metadata
from books_scraper.web.served_metadata import resolve_env, served_metadata


async def started(published_db, **settings):
    ds = publication(published_db.path, published_db.operations_path, **settings)
    await ds.invoke_startup()
    return ds


async def test_the_plugins_block_leaves_the_copied_metadata(published_db):
    ds = await started(published_db)
    assert plugin_metadata(ds, "tables") is None
    assert set(plugin_metadata(ds, "plugins")["plugins"]) == set(served_metadata(os.environ)["plugins"])


async def test_every_plugin_reads_its_configuration_as_before(published_db):
    ds = await started(published_db)
    for name, config in served_metadata(os.environ)["plugins"].items():
        assert ds.plugin_config(name) == resolve_env(config, os.environ), name


async def test_the_metadata_page_still_lists_the_plugins(published_db):
    ds = await started(published_db)
    data = (await ds.client.get("/-/metadata.json")).json()
    assert set(data["plugins"]) == set(served_metadata(os.environ)["plugins"])
    assert data["databases"]["books"]["title"] == served_metadata(os.environ)["databases"]["books"]["title"]


async def test_pages_that_need_the_plugins_configuration_work(published_db):
    ds = await started(published_db)
    assert (await ds.client.get("/-/dashboards/books")).status_code == 200
    assert (await ds.client.get("/books/books.json?_size=1")).status_code == 200
    assert (await ds.client.get("/api/v1/stats/overview")).status_code == 200


async def test_a_table_allow_block_still_applies(published_db):
    from books_scraper.web.worker import build_datasette

    metadata = copy.deepcopy(served_metadata(os.environ))
    metadata["databases"]["books"]["tables"]["price_history"]["allow"] = False
    ds = build_datasette(published_db.path, published_db.operations_path, metadata)
    await ds.invoke_startup()
    assert (await ds.client.get("/books/price_history.json")).status_code == 403
    assert (await ds.client.get("/books/books.json?_size=1")).status_code == 200


async def test_two_datasettes_given_the_same_metadata_both_keep_their_plugins(published_db):
    from datasette.app import Datasette

    from books_scraper.web.worker import PLUGINS

    metadata = served_metadata(os.environ)
    first, second = (Datasette(memory=True, metadata=metadata, plugins_dir=str(PLUGINS)) for _ in range(2))
    await first.invoke_startup()
    await second.invoke_startup()
    dashboards = first.plugin_config("datasette-dashboards")
    assert dashboards is not None and dashboards == second.plugin_config("datasette-dashboards")
    assert "plugins" in metadata
