"""Properties of the cleaning functions: any text in, a value or None out (validation counts the drop),
never an exception; and what the values mean, for every input Hypothesis can think of."""

from __future__ import annotations

import math
import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from books_scraper.cleaning import (
    RATING_WORDS,
    clean_description,
    normalize_text,
    parse_availability,
    parse_int,
    parse_money,
    parse_rating,
)

# Bounded, so the whole file runs in a few seconds.
BOUNDED = settings(max_examples=200, deadline=None)

# What the site's text is made of, awkward cases included, so short strings hit them often.
SITE_CHARACTERS = (
    "0123456789 .,-£$€()Â"
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "\t\n\r\u00a0\u2009\u3000"  # whitespace
    "\ufeff\u200b\u200c\u200d\u2060\u00ad"  # byte-order mark, zero-width characters, soft hyphen
    "\u0301\u0308\u0327é"  # combining marks and a composed letter
    "٣𝟏²½"  # digits that are not ASCII, and numbers that are not digits
)
site_text = st.text(alphabet=SITE_CHARACTERS, max_size=40)
any_text = st.one_of(st.none(), st.text(), site_text)
# Words the site's text holds, each on its own, and in the sentences that frame them.
site_words = st.sampled_from(["In stock", "available", "star-rating", "...more", "more", "£", "Â£"])
framed_text = st.lists(st.one_of(site_words, site_text), max_size=6).map(" ".join)
inputs = st.one_of(any_text, framed_text)

INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060\u00ad"
LONG_NUMBER = "9" * 5000  # past Python's 4300-digit limit on converting text to int
TOO_BIG_FOR_SQLITE = str(2**63)  # one more than SQLite's largest INTEGER: the write would fail
MAX_INTEGER = 2**63 - 1


@BOUNDED
@given(inputs)
@example("e\u00ad\u0301")  # a soft hyphen between a letter and its accent
def test_normalize_text_gives_clean_text_or_none(text):
    clean = normalize_text(text)
    if clean is None:
        return
    assert clean and clean == " ".join(clean.split())  # trimmed, single spaces
    assert not set(clean) & set(INVISIBLE)
    assert unicodedata.is_normalized("NFC", clean)


@BOUNDED
@given(inputs)
@example("e\u00ad\u0301")
def test_normalize_text_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once


@BOUNDED
@given(inputs)
def test_clean_description_gives_clean_text_or_none(text):
    description = clean_description(text)
    assert description is None or (description and normalize_text(description) == description)


@BOUNDED
@given(inputs)
def test_clean_description_removes_exactly_the_more_marker(text):
    assert clean_description(f"{text or ''} ...more") == normalize_text(text)


@BOUNDED
@given(inputs)
@example(LONG_NUMBER)  # inf to float()
def test_parse_money_gives_a_finite_number_or_none(text):
    amount = parse_money(text)
    assert amount is None or (isinstance(amount, float) and math.isfinite(amount))


@BOUNDED
@given(st.floats(min_value=-1e12, max_value=1e12), st.sampled_from(["£", "Â£", " £ ", ""]))
def test_parse_money_reads_back_a_formatted_price(amount, symbol):
    assert parse_money(f"{symbol}{amount:.2f}") == float(f"{amount:.2f}")
    assert parse_money(f"{symbol}{amount:,.2f}") == float(f"{amount:.2f}")


@BOUNDED
@given(inputs)
@example("star-rating ²")  # a digit to str.isdigit(), not to int()
@example(f"star-rating {LONG_NUMBER}")
@example(f"star-rating {TOO_BIG_FOR_SQLITE}")
def test_parse_rating_gives_an_int_or_none(text):
    rating = parse_rating(text)
    assert rating is None or (isinstance(rating, int) and 0 <= rating <= MAX_INTEGER)


@BOUNDED
@given(st.text(alphabet=SITE_CHARACTERS.replace("0123456789", "")))
@example("star-rating")
@example("star-rating Zero Six")
def test_parse_rating_without_a_rating_word_or_number_is_none(text):
    words = text.lower().split()
    if not set(words) & set(RATING_WORDS) and not any(word.isdecimal() for word in words):
        assert parse_rating(text) is None


@BOUNDED
@given(st.sampled_from(sorted(RATING_WORDS)), site_text, st.sampled_from([str.lower, str.title, str.upper]))
def test_parse_rating_finds_its_word_among_others(word, other, case):
    words = other.lower().split()
    if set(words) & set(RATING_WORDS) or any(w.isdecimal() for w in words):
        return  # another rating in the text comes first
    assert parse_rating(f"star-rating {case(word)} {other}") == RATING_WORDS[word]


@BOUNDED
@given(inputs)
@example(f"In stock ({LONG_NUMBER} available)")
@example(f"In stock ({TOO_BIG_FOR_SQLITE} available)")
def test_parse_availability_gives_a_flag_and_a_count(text):
    in_stock, count = parse_availability(text)
    assert isinstance(in_stock, bool)
    assert count is None or (isinstance(count, int) and 0 <= count <= MAX_INTEGER)
    if not in_stock:
        assert count == 0


@BOUNDED
@given(st.integers(min_value=0, max_value=10**9), site_text)
def test_parse_availability_reads_back_its_count(count, noise):
    assert parse_availability(f"In stock ({count} available)") == (True, count)
    assert parse_availability(f" in Stock ({count:,} available) {noise}") == (True, count)
    assert parse_availability(f"Out of stock ({count} available)") == (False, 0)


@BOUNDED
@given(inputs)
@example(LONG_NUMBER)
@example(TOO_BIG_FOR_SQLITE)
def test_parse_int_gives_a_natural_number_sqlite_stores_or_none(text):
    number = parse_int(text)
    assert number is None or (isinstance(number, int) and 0 <= number <= MAX_INTEGER)


@BOUNDED
@given(st.integers(min_value=0, max_value=10**12))
def test_parse_int_reads_back_a_number(number):
    assert parse_int(str(number)) == number
    assert parse_int(f" {number:,} ") == number


def test_the_largest_integer_sqlite_stores_is_read_and_the_next_is_not():
    assert parse_int(str(MAX_INTEGER)) == MAX_INTEGER
    assert parse_int(TOO_BIG_FOR_SQLITE) is None
