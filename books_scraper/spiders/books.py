"""The `books` spider: walks the listing pages and yields one BookItem per product page."""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import get_retry_request
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
    ResponseDataLossError,
)
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from selectolax.lexbor import LexborHTMLParser, LexborNode
from twisted.python.failure import Failure

from books_scraper import crawlstats
from books_scraper import signals as books_signals
from books_scraper.items import BookItem

_RESULTS = re.compile(r"(\d[\d,]*)\s+results?\b")
_PRODUCT_ID = re.compile(r"_(\d+)/(?:index\.html)?$")

# Why a page failed, in the log line and in the `pages/failed/<reason>` stats.
FAILURE_REASONS = {
    DownloadTimeoutError: "timeout",
    DownloadFailedError: "connection lost",
    ResponseDataLossError: "body shorter than its Content-Length",
    DownloadConnectionRefusedError: "connection refused",
    CannotResolveHostError: "host not found",
}
INCOMPLETE_PAGE = "incomplete page"


class BooksSpider(scrapy.Spider):
    name = "books"
    # Incomplete pages are retried from the callback with get_retry_request, which carries the
    # retry count over in meta on purpose: Scrapy would warn that it was copied by mistake.
    custom_settings = {"META_COPY_WARN_SKIP_KEYS": ["retry_times"]}

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> "BooksSpider":
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.request_dropped, signal=signals.request_dropped)
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        start_url = self.settings.get("BOOKS_START_URL")
        yield scrapy.Request(start_url, callback=self.parse, errback=self.on_error)

    # Callbacks return lists rather than yield: Scrapy re-reads a generator callback's source on every
    # response to warn about `return value` (its cache is keyed on short-lived bound methods).

    def parse(self, response: Response) -> list[scrapy.Request]:
        """A listing page: every product on it, then the next listing page."""
        if not is_whole_page(response.body):  # a cut listing would make the books after it look gone
            return self.retry_incomplete(response)
        page = page_tree(response)
        stats = self.crawler.stats
        if stats.get_value(crawlstats.BOOKS_EXPECTED) is None:  # the first listing page
            stats.set_value(crawlstats.BOOKS_EXPECTED, parse_result_count(page))
        stats.inc_value(crawlstats.PAGES_LISTING)
        requests = [
            response.follow(link.attributes["href"], callback=self.parse_book, errback=self.on_error)
            for link in page.css("article.product_pod h3 a[href]")
        ]
        # What the site still lists, for the publication to retire the books it no longer has.
        book_ids = {book_id_from_url(request.url) for request in requests} - {None}
        self.crawler.signals.send_catch_log(books_signals.books_listed, book_ids=book_ids)
        next_page = attribute(page.css_first("ul.pager li.next a"), "href")
        if next_page:
            requests.append(response.follow(next_page, callback=self.parse, errback=self.on_error))
        return requests

    def parse_book(self, response: Response) -> list[BookItem | scrapy.Request]:
        if not is_whole_page(response.body):  # its record would be half-parsed
            return self.retry_incomplete(response)
        self.crawler.stats.inc_value(crawlstats.PAGES_PRODUCT)
        return [parse_book_page(response)]

    def retry_incomplete(self, response: Response) -> list[scrapy.Request]:
        """Fetch a page that ends mid-way again, up to RETRY_TIMES; then count it as failed."""
        retry = get_retry_request(response.request, spider=self, reason=INCOMPLETE_PAGE)
        if retry is not None:
            retry.meta.pop("download_latency", None)  # the last download's, not this one's
            return [retry]
        self.page_failed(response.request, INCOMPLETE_PAGE)
        return []

    def on_error(self, failure: Failure) -> None:
        """A page that failed after retries (HTTP error, timeout, refused): report and count it."""
        request = failure.request
        self.page_failed(request, failure_reason(failure))
        gone = failure.check(HttpError) and failure.value.response.status in (404, 410)
        if gone and request.callback != self.parse:
            book_id = book_id_from_url(request.url)
            self.crawler.signals.send_catch_log(books_signals.book_gone, book_id=book_id)

    def request_dropped(self, request: scrapy.Request) -> None:
        """A redirect back to a URL of its own chain is dropped as a duplicate without calling the
        errback: the page is never fetched, so count it as failed here."""
        if request.url in request.meta.get("redirect_urls", ()):
            self.page_failed(request, "redirect loop")

    def page_failed(self, request: scrapy.Request, reason: str) -> None:
        self.logger.warning("Failed to fetch %s: %s", request.url, reason)
        self.crawler.stats.inc_value(crawlstats.PAGES_FAILED)
        self.crawler.stats.inc_value(crawlstats.failed(reason))
        if request.callback == self.parse:
            self.crawler.stats.inc_value(crawlstats.PAGES_LISTING_FAILED)


def failure_reason(failure: Failure) -> str:
    """'HTTP 503', 'timeout', 'connection lost', 'max redirections reached', ..."""
    if failure.check(HttpError):
        return f"HTTP {failure.value.response.status}"
    for kind, reason in FAILURE_REASONS.items():
        if failure.check(kind):
            return reason
    if failure.check(IgnoreRequest) and failure.getErrorMessage():
        return failure.getErrorMessage()
    return failure.type.__name__


def is_whole_page(body: bytes) -> bool:
    """Whether the page reaches its closing </html>, as every page of the site does."""
    return body[-256:].rstrip().lower().endswith(b"</html>")


def book_id_from_url(url: str) -> int | None:
    """'.../a-light-in-the-attic_1000/index.html' -> 1000."""
    match = _PRODUCT_ID.search(url)
    return int(match.group(1)) if match else None


def parse_result_count(page: LexborHTMLParser) -> int | None:
    """'<strong>1000</strong> results' (or '1 result') on a listing page."""
    form = page.css_first("form.form-horizontal")
    match = _RESULTS.search(" ".join(form.text(separator=" ").split())) if form is not None else None
    return int(match.group(1).replace(",", "")) if match else None


# A product page ends with "Products you recently viewed": other books in listing markup, about half
# the page. Every field of the record comes before it, so the tree is built from the part before
# the first of those books; only where that part lacks a field is the whole page parsed.
_OTHER_BOOKS = re.compile(rb"<article[^>]*\bproduct_pod\b")
PAGE_FIELDS = (
    "upc", "title", "price", "price_incl_tax", "tax", "rating", "availability", "category",
    "description", "product_type", "number_of_reviews", "image_url",
)


def parse_book_page(response: Response) -> BookItem:
    """Everything the product page says about one book, as raw text; the pipelines clean it."""
    other_books = _OTHER_BOOKS.search(response.body)
    if other_books:
        item = read_book(response, page_tree(response, response.body[: other_books.start()]))
        if all(getattr(item, name) is not None for name in PAGE_FIELDS):
            return item
    return read_book(response, page_tree(response))


def read_book(response: Response, page: LexborHTMLParser) -> BookItem:
    article = page.css_first("article.product_page")
    main = first(article, "div.product_main")
    table = product_table(article)
    crumbs = page.css("ul.breadcrumb > li > a")
    category = crumbs[2] if len(crumbs) >= 3 else None  # Home > Books > Category
    category_href = attribute(category, "href")
    image = attribute(first(article, "#product_gallery img"), "src")
    return BookItem(
        id=book_id_from_url(response.url),
        upc=table.get("UPC"),
        title=text_of(first(main, "h1")),
        price=table.get("Price (excl. tax)") or text_of(first(main, "p.price_color")),
        price_incl_tax=table.get("Price (incl. tax)"),
        tax=table.get("Tax"),
        currency="GBP",
        rating=attribute(first(main, "p.star-rating"), "class"),
        availability=table.get("Availability") or text_of(first(main, "p.availability")),
        category=text_of(category),
        category_url=response.urljoin(category_href) if category_href else None,
        description=text_of(first(article, "#product_description ~ p")),
        product_type=table.get("Product Type"),
        number_of_reviews=table.get("Number of reviews"),
        image_url=response.urljoin(image) if image else None,
        product_url=response.url,
        scraped_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


# Pages are read with selectolax's Lexbor HTML5 parser straight from the response bytes: building
# and querying its tree costs about a third of what Scrapy's selectors (parsel, lxml) cost on these
# pages, and the parsing is most of the crawl's own CPU time (docs/benchmarks.md).
def page_tree(response: Response, body: bytes | None = None) -> LexborHTMLParser:
    """Lexbor's tree of a page, or of the first part of its body.

    The encoding is found as browsers find it: a charset in the Content-Type header first (unless
    the bytes show it is wrong, see body_encoding), then a byte-order mark or the page's
    <meta charset>, else UTF-8.
    """
    body = response.body if body is None else body
    content_type = (response.headers.get(b"Content-Type") or b"").lower()
    if b"charset=" in content_type and isinstance(response, TextResponse):
        encoding = body_encoding(response.encoding, body)  # Scrapy's reading of the header
        if encoding != "utf-8":
            return LexborHTMLParser(body.decode(encoding, errors="replace"))
        return LexborHTMLParser(body)
    return LexborHTMLParser(body, encoding=True)


def body_encoding(declared: str, body: bytes) -> str:
    """The header's encoding, unless the bytes contradict it: a server's default header often
    names one encoding for pages written in the other. Non-ASCII bytes that are valid UTF-8 under a
    Latin-1 or windows-1252 header are UTF-8 (such byte pairs are all but absent from Latin text),
    and bytes that are not valid UTF-8 under a UTF-8 header are windows-1252."""
    name = _codec_name(declared)
    if name not in ("utf-8", "iso8859-1", "cp1252") or body.isascii():
        return name
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252" if name == "utf-8" else name
    return "utf-8"


@lru_cache(maxsize=8)
def _codec_name(encoding: str) -> str:
    return codecs.lookup(encoding).name


def product_table(article: LexborNode | None) -> dict[str, str]:
    """The 'Product Information' table as {header: cell text}."""
    table = {}
    for row in article.css("table.table-striped tr") if article is not None else ():
        cells: dict[str, LexborNode] = {}
        for cell in row.iter():
            cells.setdefault(cell.tag, cell)
        if "th" in cells and "td" in cells:
            table[" ".join(cells["th"].text().split())] = cells["td"].text()
    return table


def first(node: LexborNode | None, selector: str) -> LexborNode | None:
    return node.css_first(selector) if node is not None else None


def text_of(node: LexborNode | None) -> str | None:
    """The node's text, or None where the node is missing or has no text."""
    return (node.text() or None) if node is not None else None


def attribute(node: LexborNode | None, name: str) -> str | None:
    return (node.attributes.get(name) or None) if node is not None else None
