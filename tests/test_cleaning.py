import pytest

from books_scraper.cleaning import clean_description, normalize_text, parse_availability, parse_money, parse_rating


@pytest.mark.parametrize(
    "text,expected",
    [
        pytest.param("£51.77", 51.77, id="pounds-and-pence"),
        pytest.param("Â£51.77", 51.77, id="a-pound-sign-read-as-latin-1"),
        pytest.param("  £ 1,234.50 ", 1234.5, id="a-thousands-comma-and-spaces"),
        pytest.param("£1\u00a0234.50", 1234.5, id="a-no-break-space-between-thousands"),
        pytest.param("£0.00", 0.0, id="zero"),
        pytest.param("51", 51.0, id="a-number-without-a-currency"),
        pytest.param("", None, id="empty-text-is-no-price"),
        pytest.param("£", None, id="a-pound-sign-alone-is-no-price"),
        pytest.param(None, None, id="none-is-no-price"),
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
        pytest.param("In stock (22 available)", (True, 22), id="in-stock-with-a-count"),
        pytest.param("\n    In stock (1 available)\n", (True, 1), id="in-stock-between-whitespace"),
        pytest.param("In stock", (True, None), id="in-stock-without-a-count"),
        pytest.param("Out of stock", (False, 0), id="out-of-stock-is-none-available"),
        pytest.param(None, (False, 0), id="no-availability-is-none-available"),
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
        pytest.param("A fine story. ...more", "A fine story.", id="the-marker-after-a-space"),
        pytest.param("A fine story...more", "A fine story", id="the-marker-against-the-text"),
        pytest.param("Ends with more", "Ends with more", id="the-word-more-is-kept"),
        pytest.param(" ...more", None, id="only-the-marker-is-no-description"),
        pytest.param(None, None, id="no-description"),
    ],
)
def test_clean_description_drops_the_more_marker(text, expected):
    assert clean_description(text) == expected
