import pytest

from books_scraper.cleaning import clean_description, normalize_text, parse_availability, parse_money, parse_rating


@pytest.mark.parametrize(
    "text,expected",
    [
        ("£51.77", 51.77),
        ("Â£51.77", 51.77),
        ("  £ 1,234.50 ", 1234.5),
        ("£1\u00a0234.50", 1234.5),
        ("£0.00", 0.0),
        ("51", 51.0),
        ("", None),
        ("£", None),
        (None, None),
    ],
)
def test_parse_money(text, expected):
    assert parse_money(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [("star-rating Three", 3), ("star-rating One", 1), ("Five", 5), ("star-rating", None), (None, None)],
)
def test_parse_rating(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("In stock (22 available)", (True, 22)),
        ("\n    In stock (1 available)\n", (True, 1)),
        ("In stock", (True, None)),
        ("Out of stock", (False, 0)),
        (None, (False, 0)),
    ],
)
def test_parse_availability(text, expected):
    assert parse_availability(text) == expected


def test_normalize_text_nfc_invisibles_and_whitespace():
    decomposed = "Cafe\u0301"  # e + combining acute
    assert normalize_text(f"\ufeff  {decomposed}\u200b \n\t au  lait ") == "Café au lait"


def test_normalize_text_empty_is_none():
    assert normalize_text(" \u200b\n ") is None


@pytest.mark.parametrize(
    "text,expected",
    [
        ("A fine story. ...more", "A fine story."),
        ("A fine story...more", "A fine story"),
        ("Ends with more", "Ends with more"),
        (" ...more", None),
        (None, None),
    ],
)
def test_clean_description_drops_the_more_marker(text, expected):
    assert clean_description(text) == expected
