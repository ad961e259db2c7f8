"""The plugins' configuration served by a get_metadata hook, out of the metadata Datasette copies.

Datasette 0.65.5 deep-copies every metadata source on each view-table permission check, twice per
table page or table JSON, to merge the tables' `allow` blocks. Our metadata's `plugins` block (the
dashboards' chart specs, the API's configuration) is three quarters of it and holds no table rules:
at startup it moves out of the metadata Datasette was given into this module, which answers the
lookups that need it (key "plugins", as plugin_config() asks, or the whole metadata) and nothing for
"tables". plugin_config() and /-/metadata answer as before.
"""

from __future__ import annotations

import weakref

from books_scraper.web.datasette_internals import pop_local_metadata

PLUGINS_KEY = "plugins"
_LIFTED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Datasette -> {"plugins": ...}


def lift_plugin_metadata(datasette) -> None:
    """Moves the plugins block out of the copied metadata; once per Datasette (startup)."""
    if datasette in _LIFTED:
        return
    plugins = pop_local_metadata(datasette, PLUGINS_KEY)
    if plugins is not None:
        _LIFTED[datasette] = {PLUGINS_KEY: plugins}


def plugin_metadata(datasette, key: str | None) -> dict | None:
    """The get_metadata answer: the plugins block for a lookup of it or of everything, else none."""
    if key is not None and key != PLUGINS_KEY:
        return None
    return _LIFTED.get(datasette)
