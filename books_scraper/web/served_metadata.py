"""metadata.yml as the server gets it, and what its auth configuration turns on, in plain words; the
settings, plugins and templates every server process is given (importable without Datasette, so the
supervisor starts quickly).

datasette-auth-tokens 0.3 compares every Bearer token with each configured one and raises (a 500 on
every Bearer request) when a token's `{"$env": ...}` variable is unset. So the server is never given
such an entry: the metadata it serves lists only the static tokens whose variable is set.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[2]
METADATA = PROJECT / "metadata.yml"
API_PLUGIN = "books-api"
TOKENS_PLUGIN = "datasette-auth-tokens"
# The Datasette names of the two databases (from their file names): metadata.yml describes them by
# these names, startup.py requires the files to be named so, and the API reads them by these names.
BOOKS_DATABASE = "books"
OPERATIONS_DATABASE = "operations"

PLUGINS = PROJECT / "plugins"
TEMPLATES = Path(__file__).resolve().parent / "templates"  # table pages: facets and filters named by label (web/facet_labels.py)

# A public, read-only service (docs/publication.md says why each one).
PUBLIC_SETTINGS: dict[str, object] = {
    "sql_time_limit_ms": 2000,
    "max_returned_rows": 1000,
    "allow_csv_stream": True,
    "max_csv_mb": 0,  # no cap: the whole catalogue streams (each page of it is one bounded query)
    "default_cache_ttl": 60,
    "truncate_cells_html": 120,
    # A facet of a filtered page over a million books takes ~100-170 ms (a covering index scan); one
    # that needs more is listed as timed out rather than holding the page (two default facets: the
    # page stays under 500 ms). Over the whole table they read stored counts (web/published_facets.py).
    "facet_time_limit_ms": 200,
    "default_allow_sql": True,
    "allow_download": True,
    # Suggesting facets runs a query per column on every table page and its JSON: 10x the cost of
    # the page itself (bench/api_bench.py); the useful facets are configured in metadata.yml.
    "suggest_facets": False,
}

# Seconds a stopping worker lets the requests it has begun finish (queries stop after 2 s).
GRACEFUL_SECONDS = 5


# libyaml's parser where PyYAML has it (its wheels do): the same documents, 5-10x faster to read.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_metadata(path: Path = METADATA) -> dict:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}


def env_name(value: Any) -> str | None:
    """VAR of a `{"$env": "VAR"}` reference, None for anything else."""
    if isinstance(value, Mapping) and list(value) == ["$env"]:
        return value["$env"]
    return None


def is_set(value: Any, environ: Mapping[str, str]) -> bool:
    """A literal value, or an $env reference whose variable is set and not empty."""
    name = env_name(value)
    return bool(environ.get(name)) if name is not None else bool(value)


def resolve_env(value: Any, environ: Mapping[str, str]) -> Any:
    """A copy with each `{"$env": "VAR"}` replaced by the variable's value (None when unset), as
    Datasette's plugin_config() gives a plugin its block."""
    name = env_name(value)
    if name is not None:
        return environ.get(name)
    if isinstance(value, Mapping):
        return {key: resolve_env(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env(item, environ) for item in value]
    return value


def folded_column_descriptions(table: dict) -> None:
    """Datasette 0.65 lists every described column above a table's rows (18 lines for books, so the
    first row was ~2,500 px down). The descriptions move into the table's description, folded in a
    <details> element that opens on a click; metadata.yml still describes each column once."""
    columns = table.pop("columns", None)
    if not columns:
        return
    intro = html.escape(table.pop("description", "") or "")
    items = "".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(str(text))}</dd>" for name, text in columns.items()
    )
    table["description_html"] = (
        f"{table.get('description_html') or f'<p>{intro}</p>'}"
        f"<details class=\"column-descriptions\"><summary>What each column holds</summary><dl>{items}</dl></details>"
    )


def served_metadata(environ: Mapping[str, str], metadata: dict | None = None) -> dict:
    """The metadata as the server gets it: the static tokens whose secret is not set left out, and
    the column descriptions folded (folded_column_descriptions)."""
    served = copy.deepcopy(metadata if metadata is not None else load_metadata())
    for database in (served.get("databases") or {}).values():
        for table in ((database or {}).get("tables") or {}).values():
            if isinstance(table, dict):
                folded_column_descriptions(table)
    tokens_config = (served.get("plugins") or {}).get(TOKENS_PLUGIN)
    if isinstance(tokens_config, dict) and isinstance(tokens_config.get("tokens"), list):
        tokens_config["tokens"] = [
            token for token in tokens_config["tokens"]
            if isinstance(token, Mapping) and is_set(token.get("token"), environ)
        ]
    return served


def _roles(entry: Mapping[str, Any]) -> str:
    roles = entry.get("roles") or []
    return ", ".join(roles) if roles else "no role"


def auth_summary(environ: Mapping[str, str], metadata: dict | None = None) -> list[str]:
    """One line each for login and the static tokens: what is on, and which variable turns on the
    rest. Names of variables only, never their values."""
    from books_scraper.api.config import usable_secret  # here: the API's config imports this module
    plugins = (metadata if metadata is not None else load_metadata()).get("plugins") or {}
    api = plugins.get(API_PLUGIN) or {}
    users = [user for user in api.get("users") or [] if isinstance(user, Mapping)]
    secret = api.get("jwt_secret")
    name = env_name(secret) or "jwt_secret"
    value = environ.get(name) if env_name(secret) else secret
    ready = [f"{u['username']} ({_roles(u)})" for u in users if is_set(u.get("password_hash"), environ)]
    missing = [env_name(u.get("password_hash")) or "?" for u in users if not is_set(u.get("password_hash"), environ)]
    if not is_set(secret, environ):
        login = f"login off: set {name} (32 bytes or more) to turn it on"
    elif not usable_secret(value if isinstance(value, str) else None):
        login = f"login off: {name} is shorter than 32 bytes"
    elif not ready:
        login = "login off: no user has a password hash; set " + ", ".join(missing)
    else:
        login = "login on for " + ", ".join(ready)
        if missing:
            login += "; no password hash in " + ", ".join(missing)
    tokens = [t for t in (plugins.get(TOKENS_PLUGIN) or {}).get("tokens") or [] if isinstance(t, Mapping)]
    on = [f"{(t.get('actor') or {}).get('id', '?')} ({_roles(t.get('actor') or {})})"
          for t in tokens if is_set(t.get("token"), environ)]
    off = [env_name(t.get("token")) or "?" for t in tokens if not is_set(t.get("token"), environ)]
    static = "static tokens on for " + (", ".join(on) if on else "none")
    if off:
        static += "; off until set: " + ", ".join(off)
    return [login, static]
