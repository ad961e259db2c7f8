"""The `books` spider: walks the listing pages and yields one BookItem per product page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import scrapy
from lxml import etree, html
from lxml.etree import XPath
from scrapy.http import Response
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure

from books_scraper.items import BookItem

_RESULTS = re.compile(r"(\d[\d,]*)\s+results?\b")
_PRODUCT_ID = re.compile(r"_(\d+)/(?:index\.html)?$")


class BooksSpider(scrapy.Spider):
    name = "books"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What the site still lists, for the store to retire books it no longer has.
        self.listed_book_ids: set[int] = set()
        self.gone_book_ids: set[int] = set()  # product pages that answered 404 or 410
        self.listing_failures = 0

    async def start(self) -> AsyncIterator[scrapy.Request]:
        start_url = self.settings.get("BOOKS_START_URL")
        yield scrapy.Request(start_url, callback=self.parse, errback=self.on_error)

    def parse(self, response: Response) -> Iterator[scrapy.Request]:
        """A listing page: every product on it, then the next listing page."""
        if self.crawler.stats.get_value("books/expected") is None:  # the first listing page
            self.crawler.stats.set_value("books/expected", parse_result_count(response))
        self.crawler.stats.inc_value("pages/listing")
        for href in response.css("article.product_pod h3 a::attr(href)").getall():
            request = response.follow(href, callback=self.parse_book, errback=self.on_error)
            book_id = book_id_from_url(request.url)
            if book_id is not None:
                self.listed_book_ids.add(book_id)
            yield request
        next_page = response.css("ul.pager li.next a::attr(href)").get()
        if next_page:
            yield response.follow(next_page, callback=self.parse, errback=self.on_error)

    def parse_book(self, response: Response) -> BookItem:
        # A plain function, not a generator: Scrapy re-reads a generator callback's source on every
        # response to warn about `return value` (its cache is keyed on short-lived bound methods).
        self.crawler.stats.inc_value("pages/product")
        return parse_book_page(response)

    def on_error(self, failure: Failure) -> None:
        """A page that failed after retries (HTTP error, timeout, refused): report and count it."""
        request = failure.request
        self.logger.warning("Failed to fetch %s: %s", request.url, failure.getErrorMessage())
        self.crawler.stats.inc_value("pages/failed")
        if request.callback == self.parse:
            self.listing_failures += 1
        elif failure.check(HttpError) and failure.value.response.status in (404, 410):
            self.gone_book_ids.add(book_id_from_url(request.url))


def book_id_from_url(url: str) -> int | None:
    """'.../a-light-in-the-attic_1000/index.html' -> 1000."""
    match = _PRODUCT_ID.search(url)
    return int(match.group(1)) if match else None


def parse_result_count(response: Response) -> int | None:
    """'<strong>1000</strong> results' (or '1 result') on a listing page."""
    text = " ".join(response.css("form.form-horizontal ::text").getall())
    match = _RESULTS.search(" ".join(text.split()))
    return int(match.group(1).replace(",", "")) if match else None


# Product pages are most of the crawl: they are parsed straight from the response bytes (parsel
# decodes, strips and re-encodes first) and read with XPath compiled once, which costs about half
# as much CPU as per-call parsel queries (docs/benchmarks.md).
_PRODUCT = XPath("//article[contains(@class, 'product_page')]")
_MAIN = XPath("div/div[contains(@class, 'product_main')]")
_TITLE = XPath("string(h1)")
_PRICE = XPath("string(p[contains(@class, 'price_color')])")
_RATING = XPath("string(p[contains(@class, 'star-rating')]/@class)")
_AVAILABILITY = XPath("string(p[contains(@class, 'availability')])")
_IMAGE = XPath("string(div//div[@id='product_gallery']//img/@src)")
_DESCRIPTION = XPath("div[@id='product_description']/following-sibling::p[1]/text()")
_TABLE_ROWS = XPath("table[contains(@class, 'table-striped')]//tr")
_CRUMBS = XPath("//ul[contains(@class, 'breadcrumb')]/li/a")


def parse_book_page(response: Response) -> BookItem:
    """Everything the product page says about one book, as raw text; the pipelines clean it."""
    root = product_tree(response)
    articles = _PRODUCT(root)
    article = articles[0] if articles else etree.Element("article")
    mains = _MAIN(article)
    main = mains[0] if mains else etree.Element("div")
    table = product_table(article)
    crumbs = _CRUMBS(root)
    category = crumbs[2] if len(crumbs) >= 3 else None  # Home > Books > Category
    image = _IMAGE(article)
    descriptions = _DESCRIPTION(article)
    return BookItem(
        id=book_id_from_url(response.url),
        upc=table.get("UPC"),
        title=_TITLE(main) or None,
        price=table.get("Price (excl. tax)") or _PRICE(main) or None,
        price_incl_tax=table.get("Price (incl. tax)"),
        tax=table.get("Tax"),
        currency="GBP",
        rating=_RATING(main) or None,
        availability=table.get("Availability") or _AVAILABILITY(main) or None,
        category=category.text if category is not None else None,
        category_url=response.urljoin(category.get("href")) if category is not None else None,
        description=str(descriptions[0]) if descriptions else None,
        product_type=table.get("Product Type"),
        number_of_reviews=table.get("Number of reviews"),
        image_url=response.urljoin(image) if image else None,
        product_url=response.url,
        scraped_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def product_tree(response: Response) -> etree._Element:
    """The page's lxml tree; an empty element for an empty or unparsable body."""
    try:
        root = etree.fromstring(response.body, parser=_html_parser(response.encoding))
    except etree.LxmlError:
        root = None
    return root if root is not None else etree.Element("html")


@lru_cache(maxsize=8)
def _html_parser(encoding: str) -> html.HTMLParser:
    return html.HTMLParser(recover=True, encoding=encoding)


def product_table(article: etree._Element) -> dict[str, str]:
    """The 'Product Information' table as {header: cell text}."""
    table = {}
    for row in _TABLE_ROWS(article):
        header, cell = row.find("th"), row.find("td")
        if header is not None and cell is not None:
            table[" ".join(header.text_content().split())] = cell.text_content()
    return table
