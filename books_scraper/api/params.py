"""Query-string parsing: every bad value becomes a 400 naming the parameter, never a 500."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from books_scraper.api.errors import bad_parameter

# SQLite's INTEGER range: the default bounds of every integer parameter (bigger would be a 500).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def text_param(args: Mapping, name: str, max_length: int = 200) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > max_length:
        raise bad_parameter(name, f"{name} is longer than {max_length} characters")
    return value or None


def int_param(
    args: Mapping,
    name: str,
    default: int | None = None,
    minimum: int = INT_MIN,
    maximum: int = INT_MAX,
) -> int | None:
    raw = text_param(args, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_parameter(name, f"{name} must be an integer, got {raw!r}") from None
    _check_bounds(name, value, minimum, maximum)
    return value


def float_param(
    args: Mapping,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float | None:
    raw = text_param(args, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_parameter(name, f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise bad_parameter(name, f"{name} must be a finite number, got {raw!r}")
    _check_bounds(name, value, minimum, maximum)
    return value


def bool_param(args: Mapping, name: str) -> bool | None:
    raw = text_param(args, name)
    if raw is None:
        return None
    if raw.lower() in TRUE:
        return True
    if raw.lower() in FALSE:
        return False
    raise bad_parameter(name, f"{name} must be true or false, got {raw!r}")


def choice_param(args: Mapping, name: str, choices: list[str], default: str) -> str:
    raw = text_param(args, name)
    if raw is None:
        return default
    if raw not in choices:
        raise bad_parameter(name, f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return raw


def _check_bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise bad_parameter(name, f"{name} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise bad_parameter(name, f"{name} must be <= {maximum}")


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page_param(args: Mapping, default: int = 50, maximum: int = 1000) -> Page:
    return Page(
        limit=int_param(args, "limit", default, minimum=1, maximum=maximum),
        offset=int_param(args, "offset", 0, minimum=0),
    )
