"""The `books-api` block of metadata.yml: validated once, at startup, into an ApiConfig.

A typo or a bad value stops the server with one line that names the key
(`books-api: unknown key 'max_bodybytes'`); views read the validated ApiConfig, never the raw block.
`startup.py` runs the same check before it starts Datasette, and the plugin's `startup` hook runs it
for a plain `datasette serve`.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import click
import limits

from books_scraper.web.served_metadata import API_PLUGIN

# The API's own actions; which actors may do each is configuration (`permissions`, Datasette allow blocks).
# books-api-crawl: /api/v1/scraping/* (api/scraping.py); books-api-metrics: GET /-/metrics (web/metrics.py).
ACTIONS = ("books-api-predict", "books-api-crawl", "books-api-metrics")
POSITIVE_INTEGERS = ("access_token_ttl", "refresh_token_ttl", "max_prediction_rows", "max_body_bytes")
USER_KEYS = ("username", "password_hash", "roles")
# Rate limits in the `limits` library's notation ("10/minute", "5/minute;100/hour"); used by protection.py.
RATE_LIMITS = {
    "login_per_address": "10/minute",  # POST /api/v1/auth/login, per client address
    "login_per_username": "5/minute",  # POST /api/v1/auth/login, per username in the body
    "refresh_per_address": "30/minute",  # POST /api/v1/auth/refresh, per client address
    "scraping_jobs_per_actor": "10/minute",  # POST /api/v1/scraping/jobs and /trigger, per actor or address
}
CORS_KEYS = ("origins",)
MIN_SECRET_BYTES = 32  # the JWT signing secret's least length (HS256 wants the hash's 32 bytes)
ORIGIN = re.compile(r"(https?)://([a-z0-9.-]+|\[[0-9a-f:.]+\])(:[0-9]{1,5})?", re.IGNORECASE)


def usable_secret(secret: str | None) -> bool:
    return bool(secret) and len(secret.encode()) >= MIN_SECRET_BYTES


class ConfigError(click.ClickException):
    """A bad `books-api` block; as a ClickException, `datasette serve` prints it as one line and exits 1."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"{API_PLUGIN}: {problem}")


@dataclass(frozen=True)
class User:
    username: str
    password_hash: str | None  # None: its variable is unset, so this user cannot log in
    roles: frozenset[str]


@dataclass(frozen=True)
class ApiConfig:
    jwt_secret: str | None = None
    access_token_ttl: int = 15 * 60
    refresh_token_ttl: int = 7 * 24 * 60 * 60
    users: tuple[User, ...] = ()
    max_prediction_rows: int = 10_000
    max_body_bytes: int = 2_000_000
    # action -> Datasette allow block; an action with none is allowed to no one
    permissions: Mapping[str, Any] = field(default_factory=dict)
    # key of RATE_LIMITS -> its limits (all must allow a request)
    rate_limits: Mapping[str, tuple[limits.RateLimitItem, ...]] = field(
        default_factory=lambda: _rate_limits({})
    )
    cors_origins: frozenset[str] = frozenset()  # lowercased origins, or "*"; empty: CORS off


KEYS = tuple(f.name for f in fields(ApiConfig) if f.name != "cors_origins") + ("cors",)


def parse_config(raw: Any) -> ApiConfig:
    """The block as Datasette resolves it ($env references already replaced by their values)."""
    if raw is None:
        return ApiConfig()
    if not isinstance(raw, Mapping):
        raise ConfigError("the block must be a mapping of keys to values")
    _no_unknown_keys(raw, KEYS)
    values = {name: raw[name] for name in KEYS if raw.get(name) is not None}
    for name in POSITIVE_INTEGERS:
        if name in values and not _positive_integer(values[name]):
            raise ConfigError(f"{name} must be a positive integer")
    if "jwt_secret" in values and not isinstance(values["jwt_secret"], str):
        raise ConfigError('jwt_secret must be a string, given as {"$env": "VAR"}')
    if "users" in values:
        values["users"] = _users(values["users"])
    if "permissions" in values:
        values["permissions"] = _permissions(values["permissions"])
    if "rate_limits" in values:
        values["rate_limits"] = _rate_limits(values["rate_limits"])
    if "cors" in values:
        values["cors_origins"] = _cors_origins(values.pop("cors"))
    return ApiConfig(**values)


def _no_unknown_keys(block: Mapping, known: tuple[str, ...], prefix: str = "") -> None:
    for key in block:
        if key not in known:
            raise ConfigError(f"unknown key {prefix + str(key)!r}")


def _positive_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _users(raw: Any) -> tuple[User, ...]:
    if not isinstance(raw, list):
        raise ConfigError("users must be a list of {username, password_hash, roles}")
    users: list[User] = []
    for index, entry in enumerate(raw):
        where = f"users[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a mapping of username, password_hash and roles")
        _no_unknown_keys(entry, USER_KEYS, f"{where}.")
        username, password_hash, roles = (entry.get(key) for key in USER_KEYS)
        if not isinstance(username, str) or not username:
            raise ConfigError(f"{where}.username must be a non-empty string")
        if any(user.username == username for user in users):
            raise ConfigError(f"{where}.username {username!r} is listed twice")
        if password_hash is not None and not isinstance(password_hash, str):
            raise ConfigError(f'{where}.password_hash must be a string, given as {{"$env": "VAR"}}')
        if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
            raise ConfigError(f"{where}.roles must be a list of role names")
        users.append(User(username, password_hash or None, frozenset(roles)))
    return tuple(users)


def _permissions(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError("permissions must map each action to a Datasette allow block")
    _no_unknown_keys(raw, ACTIONS, "permissions.")
    for action, allow in raw.items():
        # Not null: actor_matches_allow reads a missing allow block as "everyone".
        if not isinstance(allow, (Mapping, bool)):
            raise ConfigError(f"permissions.{action} must be an allow block such as {{roles: [admin]}}")
    return dict(raw)


def _rate_limits(raw: Any) -> dict[str, tuple[limits.RateLimitItem, ...]]:
    if not isinstance(raw, Mapping):
        raise ConfigError("rate_limits must map each limit to a rate such as 10/minute")
    _no_unknown_keys(raw, tuple(RATE_LIMITS), "rate_limits.")
    parsed = {}
    for key, default in RATE_LIMITS.items():
        text = raw.get(key, default)
        try:
            items = tuple(limits.parse_many(text)) if isinstance(text, str) else ()
        except ValueError:
            items = ()
        if not items or any(item.amount < 1 for item in items):
            raise ConfigError(f"rate_limits.{key} must be a rate such as 10/minute or 5/minute;100/hour")
        parsed[key] = items
    return parsed


def _cors_origins(raw: Any) -> frozenset[str]:
    if not isinstance(raw, Mapping):
        raise ConfigError("cors must be a mapping such as {origins: [https://example.org]}")
    _no_unknown_keys(raw, CORS_KEYS, "cors.")
    origins = raw.get("origins") or []
    if not isinstance(origins, list):
        raise ConfigError("cors.origins must be a list of origins")
    for index, origin in enumerate(origins):
        if origin != "*" and not (isinstance(origin, str) and ORIGIN.fullmatch(origin)):
            raise ConfigError(
                f"cors.origins[{index}] must be \"*\" or an origin such as https://example.org:8443 "
                "(scheme, host, optional port; no path)"
            )
    return frozenset(origin.lower() for origin in origins)


# One validated configuration per Datasette instance (tests build many, each with its own metadata).
_configs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def configure(datasette) -> ApiConfig:
    """Validate the instance's `books-api` block and keep it; raises ConfigError naming the bad key."""
    config = parse_config(datasette.plugin_config(API_PLUGIN))
    _configs[datasette] = config
    return config


def api_config(datasette) -> ApiConfig:
    """The validated configuration, read once at startup."""
    config = _configs.get(datasette)
    return config if config is not None else configure(datasette)
