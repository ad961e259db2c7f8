import pytest
from itemadapter import ItemAdapter
from scrapy.exceptions import DropItem
from scrapy.statscollectors import MemoryStatsCollector
from scrapy.utils.test import get_crawler
from sqlite_utils import Database

from books_scraper import signals as books_signals
from books_scraper import storage
from books_scraper.items import RECORD_FIELDS, BookItem
from books_scraper.pipelines import CleanPipeline, StorePipeline, ValidatePipeline

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


def staged_store(tmp_path, run_id: int = 7):
    """A StorePipeline handed a fresh staging database the way the Publication extension hands it."""
    crawler = get_crawler()
    pipeline = StorePipeline.from_crawler(crawler)
    path = tmp_path / ".books.db.staging"
    storage.open_books_db(str(path)).close()
    crawler.signals.send_catch_log(books_signals.staging_opened, path=str(path), run_id=run_id)
    return pipeline, crawler.stats, path


def test_the_store_writes_into_the_staging_database_it_is_handed(tmp_path):
    pipeline, stats, path = staged_store(tmp_path)
    for number in (1, 2):
        record = raw_item(id=number, upc=f"upc{number}", product_url=URL.replace("_1", f"_{number}"))
        pipeline.process_item(CleanPipeline().process_item(record))
    pipeline.close_spider()
    db = Database(path)
    assert [row["id"] for row in db["books"].rows] == [1, 2]
    assert [row["run_id"] for row in db["price_history"].rows] == [7, 7]
    assert (stats.get_value("books/stored"), stats.get_value("books/unwritten")) == (2, None)


def test_without_a_staging_database_every_record_counts_as_unwritten():
    crawler = get_crawler()
    pipeline = StorePipeline.from_crawler(crawler)
    pipeline.process_item(CleanPipeline().process_item(raw_item()))
    pipeline.close_spider()
    assert crawler.stats.get_value("books/unwritten") == 1
    assert crawler.stats.get_value("books/write_error") == "no staging database was opened"
