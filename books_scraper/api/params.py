"""Query parameters, declared once per route: the declaration parses a request's query string (every
bad value a 400 naming the parameter, never a 500) and describes itself as OpenAPI parameters.

Values are read exactly as sent: an empty value (`?category=`) is the same as leaving the parameter
out (OpenAPI `allowEmptyValue`), integers and numbers are plain JSON-style literals, booleans are
`true` or `false`. What the OpenAPI document says is what parse() enforces (tests/test_schemathesis.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from books_scraper.api.errors import ApiError, bad_parameter

# SQLite's INTEGER range: the default bounds of every integer parameter (bigger would be a 500).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
TEXT_MAX_LENGTH = 200
INTEGER_LITERAL = re.compile(r"-?[0-9]+")
NUMBER_LITERAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
BOOLEANS = {"true": True, "false": False}
# A prediction's model name: the POST body and the ?model= filters share it.
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$"
MODEL_RULE = "be 1-100 ASCII letters, digits, '_', '.', ':' or '-', starting with a letter or digit"


def pattern_matches(pattern: str, value: str) -> bool:
    """A JSON Schema (ECMA 262) `pattern` test: unanchored search, and a final `$` is the end of the
    text (Python's `$` also matches before a final newline: "m1\n" is no model name)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.search(pattern, value) is not None


def _to_integer(name: str, raw: str) -> int:
    if not INTEGER_LITERAL.fullmatch(raw):
        raise bad_parameter(name, f"{name} must be an integer, got {raw!r}")
    return int(raw)


def _to_number(name: str, raw: str) -> float:
    value = float(raw) if NUMBER_LITERAL.fullmatch(raw) else math.nan
    if not math.isfinite(value):  # also 1e999, which float() reads as infinity
        raise bad_parameter(name, f"{name} must be a finite number, got {raw!r}")
    return value


def _to_boolean(name: str, raw: str) -> bool:
    if raw not in BOOLEANS:
        raise bad_parameter(name, f"{name} must be true or false, got {raw!r}")
    return BOOLEANS[raw]


def _to_text(name: str, raw: str) -> str:
    return raw


@dataclass(frozen=True)
class Param:
    """One query parameter: its OpenAPI schema is the whole contract, parse() enforces exactly it."""

    name: str
    schema: dict
    description: str
    convert: Callable[[str, str], Any] = _to_text
    advice: str = ""  # what to do instead, added to a bound's error message
    rule: str = ""  # the pattern in words, for the error message ("must match \\w" tells a person little)


    @property
    def default(self) -> Any:
        return self.schema.get("default")

    def parse(self, args: Mapping) -> Any:
        raw = args.get(self.name)
        if raw is None or raw == "":
            return self.default
        value = self.convert(self.name, raw)
        self._check(value, raw)
        return value

    def _check(self, value: Any, raw: str) -> None:
        schema, name = self.schema, self.name
        if "enum" in schema and value not in schema["enum"]:
            raise bad_parameter(name, f"{name} must be one of {', '.join(schema['enum'])}; got {raw!r}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise bad_parameter(name, f"{name} is longer than {schema['maxLength']} characters")
        if "pattern" in schema and not pattern_matches(schema["pattern"], value):
            rule = self.rule or f"match {schema['pattern']}"
            raise bad_parameter(name, f"{name} must {rule}; got {raw!r}{self.advice}")
        if "minimum" in schema and value < schema["minimum"]:
            raise bad_parameter(name, f"{name} must be >= {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise bad_parameter(name, f"{name} must be <= {schema['maximum']}{self.advice}")

    def openapi(self) -> dict:
        return {
            "name": self.name, "in": "query", "required": False, "allowEmptyValue": True,
            "description": self.description, "schema": self.schema,
        }


def _with_default(schema: dict, default: Any) -> dict:
    return schema if default is None else {**schema, "default": default}


def integer(
    name: str, description: str, default: int | None = None, minimum: int = INT_MIN, maximum: int = INT_MAX
) -> Param:
    schema = {"type": "integer", "format": "int64", "minimum": minimum, "maximum": maximum}
    return Param(name, _with_default(schema, default), description, _to_integer)


def number(
    name: str, description: str, default: float | None = None, minimum: float | None = None,
    maximum: float | None = None,
) -> Param:
    bounds = {"minimum": minimum, "maximum": maximum}
    schema = {"type": "number", **{k: v for k, v in bounds.items() if v is not None}}
    return Param(name, _with_default(schema, default), description, _to_number)


def boolean(name: str, description: str) -> Param:
    return Param(name, {"type": "boolean"}, description, _to_boolean)


def choice(name: str, description: str, choices: list[str], default: str) -> Param:
    return Param(name, {"type": "string", "enum": list(choices), "default": default}, description, _to_text)


def text(name: str, description: str, pattern: str | None = None, rule: str = "") -> Param:
    schema = {"type": "string", "maxLength": TEXT_MAX_LENGTH}
    if pattern is not None:
        schema["pattern"] = pattern
    return Param(name, schema, description, _to_text, rule=rule)


def page(default: int | None, maximum: int = 1000, default_text: str | None = None) -> tuple[Param, Param]:
    """limit (1..maximum) and offset (>= 0); a None default: every row unless limit is given."""
    return (limit_param(default, maximum, default_text), integer("offset", "rows to skip", 0, minimum=0))


def limit_param(default: int | None, maximum: int = 1000, default_text: str | None = None) -> Param:
    limit_text = f"rows per page, 1-{maximum}" if maximum < INT_MAX else "rows per page"
    if default_text or default is not None:
        limit_text += f" (default {default_text or default})"
    return integer("limit", limit_text, default, minimum=1, maximum=maximum)


# Keyset (cursor) pagination. A list ordered by (sort value, id) hands out `next` links that carry
# `after=<cursor>`, the last row's sort value and id: the next page starts right after that row, found
# by index, so page 10,000 costs what page 1 does. OFFSET stays for short jumps, up to MAX_OFFSET.
MAX_OFFSET = 10_000
CURSOR = "after"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,2000}\.[A-Za-z0-9_-]{8}$"
# The checksum detects a cursor changed or cut short by hand, or moved to another route. It is not a
# secret: a forged cursor could only start a page at a position the client could filter for anyway.
_CURSOR_KEY = b"books-api-cursor-1"


@dataclass(frozen=True)
class Cursor:
    """Where a keyset page starts: right after the row that had this sort value and id."""

    sort: str  # the sort it was made for ("-price"); a cursor only continues its own order
    value: Any  # the last row's sort value (None when the order is the id alone)
    id: int


def _checksum(path: str, payload: bytes) -> str:
    digest = hashlib.blake2b(path.encode() + b"\n" + payload, digest_size=6, key=_CURSOR_KEY).digest()
    return base64.urlsafe_b64encode(digest).decode()


def encode_cursor(path: str, cursor: Cursor) -> str:
    """The opaque `after` value of `path`'s next page: base64url JSON, a dot, its checksum."""
    payload = json.dumps([cursor.sort, cursor.value, cursor.id], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _checksum(path, payload)


def decode_cursor(path: str, text: str) -> Cursor | None:
    """The cursor `encode_cursor(path, ...)` made, or None for anything else (malformed, changed,
    another route's)."""
    body, _, checksum = text.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not checksum or checksum != _checksum(path, payload):
            return None
        sort, value, id_ = json.loads(payload)
    except (ValueError, TypeError):  # bad base64, JSON or shape (binascii.Error is a ValueError)
        return None
    if not isinstance(sort, str) or type(id_) is not int or not isinstance(value, (str, int, float, type(None))):
        return None
    return Cursor(sort, value, id_)


def keyset_page(default: int, maximum: int = 1000) -> tuple[Param, Param, Param]:
    """limit, offset (0..MAX_OFFSET) and after: a list paged by cursor (`next`), jumps by offset."""
    return (
        limit_param(default, maximum),
        Param(
            "offset",
            {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
            f"rows to skip, at most {MAX_OFFSET}: deeper pages are reached by following `next`",
            _to_integer,
            advice=": deeper pages are reached by following `next` (a cursor, as fast at any depth)",
        ),
        cursor_param(),
    )


def cursor_param() -> Param:
    return Param(
        CURSOR,
        {"type": "string", "pattern": CURSOR_PATTERN, "maxLength": 2009},
        "start right after this cursor: the `after` of a `next` link of this route with the same sort "
        "(opaque); not with offset",
        advice=": a cursor is the opaque `after` of a `next` link, to be sent back as given",
        rule="be a cursor (letters, digits, '-' and '_', a dot, then 8 more)",
    )


@dataclass(frozen=True)
class Rule:
    """A condition on several parameters, beyond what one parameter's schema can say (OpenAPI 3.0
    has no way to say it): stated in the operation's description, enforced by parse()."""

    description: str
    holds: Callable[[dict], bool]
    error: Callable[[], ApiError]


def ordered(low: str, high: str) -> Rule:
    return Rule(
        f"{low} must be <= {high} when both are given (400 bad_range)",
        lambda v: v[low] is None or v[high] is None or v[low] <= v[high],
        lambda: ApiError(400, f"{low} must be <= {high}", "bad_range"),
    )


def at_least_one(*names: str) -> Rule:
    listed = " or ".join(names)
    return Rule(
        f"give {listed} (or both): without either, 400 bad_parameter",
        lambda v: any(v[name] is not None for name in names),
        lambda: bad_parameter(names[0], f"give {listed} or both"),
    )


def cursor_rules(path: str, sort: str | None = None) -> tuple[Rule, Rule]:
    """A keyset route's rules: `after` is one of its own cursors for the order asked (the `sort`
    parameter, else the route's fixed `sort`), and it comes without offset."""

    def follows(values: dict) -> bool:
        if values[CURSOR] is None:
            return True
        cursor = decode_cursor(path, values[CURSOR])
        return cursor is not None and cursor.sort == values.get("sort", sort)

    return (
        Rule(
            "after must be the `after` of a `next` link this route gave, with the same sort (400 bad_parameter)",
            follows,
            lambda: bad_parameter(
                CURSOR, "after is not a cursor of this route and sort (malformed, changed, or made for another "
                "route or sort): follow `next` as given, or start again without after",
            ),
        ),
        Rule(
            "give after or offset, not both (400 bad_parameter)",
            lambda v: v[CURSOR] is None or v["offset"] == 0,
            lambda: bad_parameter(CURSOR, "give after or offset, not both: `next` links carry after alone"),
        ),
    )


@dataclass(frozen=True)
class Query:
    """A route's query parameters and the rules between them."""

    params: tuple[Param, ...]
    rules: tuple[Rule, ...] = ()

    def values(self, args: Mapping) -> dict[str, Any]:
        """Each parameter on its own: defaults applied, 400 for the first bad value."""
        return {param.name: param.parse(args) for param in self.params}

    def parse(self, args: Mapping) -> dict[str, Any]:
        values = self.values(args)
        for rule in self.rules:
            if not rule.holds(values):
                raise rule.error()
        return values

    def openapi(self) -> list[dict]:
        return [param.openapi() for param in self.params]

    def description(self) -> str:
        return "; ".join(rule.description for rule in self.rules)


def page_of(values: dict, path: str | None = None) -> Page:
    """The page asked for; on a keyset route (`path` given), with its decoded cursor if any (the
    route's rules have checked it)."""
    after = values.get(CURSOR) if path is not None else None
    return Page(limit=values["limit"], offset=values["offset"], after=after and decode_cursor(path, after))


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int
    after: Cursor | None = None


# Each route's query parameters, declared once: the views parse with these, openapi.py describes them.
SORT = "order; '-' for descending"
BOOK_SORTS = ("id", "price", "rating", "title")
SORT_CHOICES = [prefix + name for name in BOOK_SORTS for prefix in ("", "-")]
TOP_RATED_SORT = "-rating"  # /books/top-rated's one order (best first, then newest id)
SPLIT = (
    choice("split", "deterministic split", ["all", "train", "test"], "all"),
    number("test_size", "share of books in test", 0.2, minimum=0, maximum=1),
    integer("seed", "split seed", 42),
)
ML_SORT = "id"  # the ML routes' one order, named in their cursors
QUERIES: dict[str, Query] = {
    "/api/v1/books": Query(
        (
            text("category", "category name or slug, any case"),
            number("min_price", "lowest price", minimum=0),
            number("max_price", "highest price", minimum=0),
            integer("min_rating", "lowest rating", minimum=0, maximum=5),
            boolean("in_stock", "only books in (true) or out of (false) stock"),
            text(
                "q", "full-text search on title and description: every word must match; at least one "
                "word (a letter, digit or _, in any script)", pattern=r"\w",
                rule="contain at least one word (a letter, digit or _)",
            ),
            choice("sort", SORT, SORT_CHOICES, "id"),
            *keyset_page(50),
        ),
        (ordered("min_price", "max_price"), *cursor_rules("/api/v1/books")),
    ),
    "/api/v1/books/search": Query(
        (
            text("title", "part of the title, any case"),
            text("category", "part of the category name, any case"),
            choice("sort", SORT, SORT_CHOICES, "title"),
            *keyset_page(50),
        ),
        (at_least_one("title", "category"), *cursor_rules("/api/v1/books/search")),
    ),
    "/api/v1/books/top-rated": Query(
        keyset_page(10), cursor_rules("/api/v1/books/top-rated", TOP_RATED_SORT)
    ),
    "/api/v1/books/price-range": Query(
        (
            number("min", "lowest price", minimum=0),
            number("max", "highest price", minimum=0),
            choice("sort", SORT, SORT_CHOICES, "price"),
            *keyset_page(50),
        ),
        (ordered("min", "max"), *cursor_rules("/api/v1/books/price-range")),
    ),
    "/api/v1/categories": Query(page(1000)),
    # Ordered by id; offset stays unbounded here (skipping reads the narrow book_split table).
    "/api/v1/ml/features": Query(
        (
            choice("format", "json (the list envelope) or csv", ["json", "csv"], "json"),
            *page(None, maximum=INT_MAX, default_text="every row"),
            cursor_param(),
        ),
        cursor_rules("/api/v1/ml/features", ML_SORT),
    ),
    "/api/v1/ml/training-data": Query(
        (
            choice("format", "json (paged), csv or ndjson (streamed)", ["json", "csv", "ndjson"], "json"),
            *SPLIT,
            *page(None, default_text="100 for json; every row for csv and ndjson"),
            cursor_param(),
        ),
        cursor_rules("/api/v1/ml/training-data", ML_SORT),
    ),
    "/api/v1/ml/predictions": Query(
        (
            text("model", "model name", pattern=MODEL_PATTERN, rule=MODEL_RULE),
            text("batch", "batch id"),
            integer("book_id", "book id", minimum=1),
            *keyset_page(100),
        ),
        cursor_rules("/api/v1/ml/predictions", ML_SORT),
    ),
    "/api/v1/ml/predictions/summary": Query((text("model", "one model only", pattern=MODEL_PATTERN, rule=MODEL_RULE),)),
    "/api/v1/scraping/jobs": Query(page(20)),
}


def query_values(path: str, args: Mapping) -> dict[str, Any]:
    """The parsed query string of the route at `path` (a key of QUERIES)."""
    return QUERIES[path].parse(args)
