"""Pure functions that turn the site's text into clean values (no Scrapy import)."""

from __future__ import annotations

import math
import re
import unicodedata

RATING_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}

# Byte-order marks and zero-width characters that survive copy-paste into the catalogue.
_INVISIBLE = re.compile("[\ufeff\u200b\u200c\u200d\u2060\u00ad]")
_MONEY = re.compile(r"\d[\d,\s\u00a0]*(?:\.\d+)?")
_MONEY_SEPARATORS = re.compile(r"[,\s\u00a0]")
_STOCK_COUNT = re.compile(r"\((\d[\d,]*)\s+available\)")
_NOT_DIGITS = re.compile(r"\D")
# The largest number SQLite stores as INTEGER; a bigger one would fail the whole write batch.
_MAX_INTEGER = 2**63 - 1


def normalize_text(value: str | None) -> str | None:
    """NFC, invisible characters removed, whitespace collapsed; empty text becomes None."""
    if value is None:
        return None
    if value.isascii():  # already NFC, and no invisible characters (a constant-time check)
        return " ".join(value.split()) or None
    # Invisible characters go before NFC: one between a letter and its accent would keep them apart.
    text = _INVISIBLE.sub("", value)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return " ".join(text.split()) or None


_MORE_MARKER = re.compile(r"\s*\.\.\.\s*more$")


def clean_description(value: str | None) -> str | None:
    """Normalised text without the site's trailing '...more' link text."""
    text = normalize_text(value)
    if not text or not text.endswith("more"):
        return text
    # Only the tail can hold the marker; a regex over the whole description costs 3x the cleaning.
    return (text[:-16] + _MORE_MARKER.sub("", text[-16:])).rstrip() or None


def parse_money(value: str | float | int | None) -> float | None:
    """'£51.77', 'Â£51.77', ' £1,234.50 ' -> 51.77 / 1234.5; None when there is no number."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = normalize_text(value) or ""
    match = _MONEY.search(text)
    if not match:
        return None
    amount = float(_MONEY_SEPARATORS.sub("", match.group(0)))
    if not math.isfinite(amount):  # hundreds of digits read as inf: no price, not an infinite one
        return None
    negative = "-" in text[: match.start()]  # '-£3.00' as well as '£-3.00'
    return round(-amount if negative else amount, 2)


def parse_rating(value: str | int | None) -> int | None:
    """'star-rating Three' or 'Three' or 3 -> 3; None when no rating word is present."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    for word in value.lower().split():
        if word in RATING_WORDS:
            return RATING_WORDS[word]
        if word.isdecimal():  # not isdigit(): '²' is a digit that int() refuses
            return to_integer(word)
    return None


def parse_availability(value: str | None) -> tuple[bool, int | None]:
    """'In stock (22 available)' -> (True, 22); 'Out of stock' -> (False, 0); 'In stock' -> (True, None)."""
    text = (normalize_text(value) or "").lower()
    if not text.startswith("in stock"):
        return False, 0
    match = _STOCK_COUNT.search(text)
    return True, to_integer(match.group(1).replace(",", "")) if match else None


def parse_int(value: str | int | None) -> int | None:
    if value is None or isinstance(value, int):
        return value
    digits = _NOT_DIGITS.sub("", value)
    return to_integer(digits) if digits else None


def to_integer(digits: str) -> int | None:
    """Decimal digits as an int; None when SQLite could not store it (and before int() refuses
    text of more than 4300 digits)."""
    if len(digits) > 19:
        return None
    number = int(digits)
    return number if number <= _MAX_INTEGER else None
