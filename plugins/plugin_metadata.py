"""The plugins' configuration served apart from the metadata Datasette copies per permission check
(books_scraper/web/plugin_metadata.py)."""

from datasette import hookimpl

from books_scraper.web.plugin_metadata import lift_plugin_metadata, plugin_metadata


@hookimpl
def startup(datasette):
    lift_plugin_metadata(datasette)


@hookimpl
def get_metadata(datasette, key, database, table):
    return plugin_metadata(datasette, key)
