import pytest
from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem
from scrapy.statscollectors import MemoryStatsCollector
from scrapy.utils.test import get_crawler

from books_scraper.items import RECORD_FIELDS, BookItem
from books_scraper.pipelines import CleanPipeline, ValidatePipeline

URL = "http://127.0.0.1:8000/catalogue/x_1/index.html"


def raw_item(**overrides) -> BookItem:
    fields = dict(
        id=1, upc=" abc ", title="\ufeffA  Title\u200b", price="Â£1,051.77", price_incl_tax="£51.77",
        tax="£0.00", currency="GBP", rating="star-rating Four", availability="\n In stock (22 available) ",
        category="Poetry", category_url="http://127.0.0.1:8000/catalogue/category/books/poetry_23/index.html",
        description="Some  text", product_type="Books", number_of_reviews="0",
        image_url="http://127.0.0.1:8000/media/x.jpg", product_url=URL, scraped_at="2026-01-01T00:00:00+00:00",
    )
    fields.update(overrides)
    return BookItem(**fields)


def validator():
    stats = MemoryStatsCollector(get_crawler())
    return ValidatePipeline(stats), stats


def test_clean_produces_typed_record():
    item = ItemAdapter(CleanPipeline().process_item(raw_item()))
    assert {k: item[k] for k in ("upc", "title", "price", "price_incl_tax", "tax", "rating",
                                 "availability", "in_stock", "stock_count", "description",
                                 "number_of_reviews")} == {
        "upc": "abc", "title": "A Title", "price": 1051.77, "price_incl_tax": 51.77, "tax": 0.0,
        "rating": 4, "availability": "In stock (22 available)", "in_stock": True, "stock_count": 22,
        "description": "Some text", "number_of_reviews": 0,
    }


def test_record_fields_are_the_published_contract():
    assert RECORD_FIELDS == [
        "id", "upc", "title", "price", "price_incl_tax", "tax", "currency", "rating", "availability",
        "in_stock", "stock_count", "category", "description", "product_type", "number_of_reviews",
        "image_url", "product_url", "scraped_at",
    ]


def test_valid_record_passes():
    pipeline, stats = validator()
    item = CleanPipeline().process_item(raw_item())
    assert pipeline.process_item(item) is item
    assert stats.get_stats() == {}


@pytest.mark.parametrize(
    "overrides,reason",
    [
        pytest.param({"price": None}, "missing price", id="no-price"),
        pytest.param({"price": "£"}, "missing price", id="a-currency-sign-without-a-number"),
        pytest.param({"price": "-£3.00"}, "negative price", id="a-negative-price"),
        pytest.param({"rating": None}, "missing rating", id="no-rating"),
        pytest.param({"rating": "star-rating Zero"}, "missing rating", id="a-rating-word-that-is-no-rating"),
        pytest.param({"title": " \u200b "}, "missing title", id="a-title-of-invisible-characters"),
        pytest.param({"upc": None}, "missing upc", id="no-upc"),
        pytest.param({"id": None}, "missing id", id="no-id"),
        pytest.param({"category": None}, "missing category", id="no-category"),
        pytest.param(
            {"category_url": "http://127.0.0.1:8000/catalogue/category/books_1/index.html"},
            "bad category url",
            id="a-category-url-without-a-category-id",
        ),
    ],
)
def test_invalid_record_is_dropped_and_counted(overrides, reason, caplog):
    pipeline, stats = validator()
    item = CleanPipeline().process_item(raw_item(**overrides))
    with pytest.raises(DropItem, match=reason):
        pipeline.process_item(item)
    assert stats.get_value(f"books/dropped/{reason}") == 1
    assert URL in caplog.text


def test_rating_out_of_range_is_dropped():
    pipeline, _ = validator()
    item = CleanPipeline().process_item(raw_item(rating=7))
    with pytest.raises(DropItem, match="rating out of range"):
        pipeline.process_item(item)


def test_second_book_with_the_same_upc_is_dropped():
    pipeline, stats = validator()
    first = CleanPipeline().process_item(raw_item(id=1, upc="same"))
    again = CleanPipeline().process_item(raw_item(id=1, upc="same"))
    other = CleanPipeline().process_item(raw_item(id=2, upc="same", product_url=URL.replace("_1", "_2")))
    assert pipeline.process_item(first) is first
    assert pipeline.process_item(again) is again  # the same book seen twice is not a conflict
    with pytest.raises(DropItem, match="duplicate upc"):
        pipeline.process_item(other)
    assert stats.get_value("books/dropped/duplicate upc") == 1


def test_description_loses_the_more_marker():
    item = ItemAdapter(CleanPipeline().process_item(raw_item(description="It was a dark night. ...more")))
    assert item["description"] == "It was a dark night."


@pytest.mark.parametrize(
    "description",
    [
        pytest.param(None, id="a-page-without-a-description"),
        pytest.param("", id="an-empty-description"),
        pytest.param(" \n\t\u00a0", id="a-description-of-whitespace"),
        pytest.param("\u200b\ufeff", id="a-description-of-invisible-characters"),
        pytest.param(" ...more", id="a-description-that-is-only-the-more-marker"),
    ],
)
def test_a_missing_description_stays_none_not_empty_text(description):
    pipeline, stats = validator()
    item = pipeline.process_item(CleanPipeline().process_item(raw_item(description=description)))
    assert ItemAdapter(item)["description"] is None  # stored as NULL, not ""
    assert stats.get_stats() == {}  # a description is optional: nothing dropped
