"""The project's log formatter: Scrapy's lines, minus per-item DEBUG lines nobody will see."""

import pytest
from scrapy import Request
from scrapy.http import HtmlResponse
from scrapy.logformatter import LogFormatter
from scrapy.utils.test import get_crawler

from books_scraper.items import BookItem
from books_scraper.logformatter import BooksLogFormatter
from books_scraper.spiders.books import BooksSpider


@pytest.mark.parametrize("settings,logged", [
    ({"LOG_LEVEL": "DEBUG"}, True),
    ({"LOG_LEVEL": 10}, True),
    ({"LOG_LEVEL": "INFO"}, False),
    ({"LOG_LEVEL": "WARNING"}, False),
    ({"LOG_LEVEL": "DEBUG", "LOG_ENABLED": False}, False),
])
def test_scraped_items_are_logged_only_where_debug_is_shown(settings, logged):
    crawler = get_crawler(BooksSpider, settings)
    formatter = BooksLogFormatter.from_crawler(crawler)
    response = HtmlResponse(url="http://127.0.0.1/x_1/index.html", body=b"")
    line = formatter.scraped(BookItem(id=1), response, BooksSpider())
    assert (line is not None) == logged
    if logged:
        assert line["args"]["item"] == BookItem(id=1)


def test_other_lines_are_scrapys():
    formatter = BooksLogFormatter.from_crawler(get_crawler(BooksSpider, {"LOG_LEVEL": "INFO"}))
    request = Request("http://127.0.0.1/x_1/index.html")
    response = HtmlResponse(url=request.url, body=b"", request=request)
    spider = BooksSpider()
    assert formatter.crawled(request, response, spider) == LogFormatter().crawled(request, response, spider)
