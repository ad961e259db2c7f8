"""The `books` spider: walks the listing pages and yields one BookItem per product page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from books_scraper.items import BookItem

_RESULTS = re.compile(r"(\d[\d,]*)\s+results?\b")
_PRODUCT_ID = re.compile(r"_(\d+)/(?:index\.html)?$")


class BooksSpider(scrapy.Spider):
    name = "books"

    async def start(self) -> AsyncIterator[scrapy.Request]:
        start_url = self.settings.get("BOOKS_START_URL")
        yield scrapy.Request(start_url, callback=self.parse, errback=self.on_error)

    def parse(self, response: Response) -> Iterator[scrapy.Request]:
        """A listing page: every product on it, then the next listing page."""
        total = parse_result_count(response)
        if total is not None and self.crawler.stats.get_value("books/expected") is None:
            self.crawler.stats.set_value("books/expected", total)
        self.crawler.stats.inc_value("pages/listing")
        for href in response.css("article.product_pod h3 a::attr(href)").getall():
            yield response.follow(href, callback=self.parse_book, errback=self.on_error)
        next_page = response.css("ul.pager li.next a::attr(href)").get()
        if next_page:
            yield response.follow(next_page, callback=self.parse, errback=self.on_error)

    def parse_book(self, response: Response) -> Iterator[BookItem]:
        self.crawler.stats.inc_value("pages/product")
        yield parse_book_page(response)

    def on_error(self, failure: Failure) -> None:
        """A page that failed after retries (HTTP error, timeout, refused): report and count it."""
        request = failure.request
        self.logger.warning("Failed to fetch %s: %s", request.url, failure.getErrorMessage())
        self.crawler.stats.inc_value("pages/failed")


def parse_result_count(response: Response) -> int | None:
    """'<strong>1000</strong> results' (or '1 result') on a listing page."""
    text = " ".join(response.css("form.form-horizontal ::text").getall())
    match = _RESULTS.search(" ".join(text.split()))
    return int(match.group(1).replace(",", "")) if match else None


def parse_book_page(response: Response) -> BookItem:
    """Everything the product page says about one book, as raw text; the pipelines clean it."""
    main = response.css("div.product_main")
    table = product_table(response)
    crumbs = response.css("ul.breadcrumb li a")
    category = crumbs[-1] if len(crumbs) >= 3 else None
    image = response.css("#product_gallery img::attr(src)").get()
    id_match = _PRODUCT_ID.search(response.url)
    return BookItem(
        id=int(id_match.group(1)) if id_match else None,
        upc=table.get("UPC"),
        title=main.css("h1::text").get(),
        price=table.get("Price (excl. tax)") or main.css("p.price_color::text").get(),
        price_incl_tax=table.get("Price (incl. tax)"),
        tax=table.get("Tax"),
        currency="GBP",
        rating=main.css("p.star-rating::attr(class)").get(),
        availability=table.get("Availability")
        or " ".join(main.css("p.availability ::text").getall()),
        category=category.css("::text").get() if category else None,
        category_url=response.urljoin(category.attrib["href"]) if category else None,
        description=response.css("#product_description + p::text").get(),
        product_type=table.get("Product Type"),
        number_of_reviews=table.get("Number of reviews"),
        image_url=response.urljoin(image) if image else None,
        product_url=response.url,
        scraped_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def product_table(response: Response) -> dict[str, Any]:
    """The 'Product Information' table as {header: cell text}."""
    return {
        row.css("th::text").get("").strip(): row.css("td::text").get()
        for row in response.css("table.table-striped tr")
    }
