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
    "word,stars",
    [
        pytest.param("One", 1, id="One-is-one-star"),
        pytest.param("Two", 2, id="Two-is-two-stars"),
        pytest.param("Three", 3, id="Three-is-three-stars"),
        pytest.param("Four", 4, id="Four-is-four-stars"),
        pytest.param("Five", 5, id="Five-is-five-stars"),
    ],
)
def test_every_rating_word_is_its_number_of_stars(word, stars):
    assert parse_rating(f"star-rating {word}") == stars  # the class attribute as the page has it
    assert parse_rating(word) == stars
    assert parse_rating(word.lower()) == parse_rating(word.upper()) == stars


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("star-rating", id="no-rating-word-after-the-class"),
        pytest.param("star-rating Zero", id="Zero-is-not-a-rating-word"),
        pytest.param("star-rating Six", id="Six-is-not-a-rating-word"),
        pytest.param("star-rating None", id="None-as-a-word-is-not-a-rating"),
        pytest.param("star-rating Twos", id="a-rating-word-inside-another-word-is-not-a-rating"),
        pytest.param("star-rating-Three", id="a-rating-word-joined-by-a-hyphen-is-not-a-rating"),
        pytest.param("", id="empty-text"),
        pytest.param(None, id="no-rating-attribute-at-all"),
    ],
)
def test_anything_else_is_no_rating(text):
    assert parse_rating(text) is None


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
