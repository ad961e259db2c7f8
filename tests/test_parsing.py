"""The spider's callbacks on pages built with the site's markup."""

from scrapy import Request
from scrapy.http import HtmlResponse
from sitebuilder import Book, listing_page, product_page

from books_scraper import signals as books_signals
from books_scraper.spiders.books import BooksSpider, page_tree, parse_book_page, parse_result_count

ROOT = "http://127.0.0.1:8000/"


def response_for(url: str, body: str) -> HtmlResponse:
    return HtmlResponse(url=url, body=body.encode("utf-8"), encoding="utf-8")


def book_response(book: Book) -> HtmlResponse:
    return response_for(ROOT + book.path, product_page(book))


def test_product_page_fields():
    book = Book(id=1000, title="A Light in the Attic", price="£51.77", rating="Three",
                availability="In stock (22 available)", category="Poetry", category_id=23,
                description="It's hard to imagine.", upc="a897fe39b1053632", reviews=0)
    item = parse_book_page(book_response(book))
    assert item.id == 1000
    assert item.upc == "a897fe39b1053632"
    assert item.title == "A Light in the Attic"
    assert item.price == "£51.77"
    assert item.rating == "star-rating Three"
    assert item.availability == "In stock (22 available)"
    assert item.category == "Poetry"
    assert item.category_url == ROOT + "catalogue/category/books/poetry_23/index.html"
    assert item.description == "It's hard to imagine."
    assert item.product_type == "Books"
    assert item.number_of_reviews == "0"
    assert item.image_url == ROOT + "media/cache/1000.jpg"
    assert item.product_url == ROOT + "catalogue/a-light-in-the-attic_1000/index.html"
    assert item.scraped_at.endswith("+00:00")


def test_no_description_is_none():
    assert parse_book_page(book_response(Book(id=5, title="Alice", description=None))).description is None


def test_non_ascii_ampersand_and_quote_title_is_unescaped():
    title = 'Café & "Quotes" — l\'été'
    assert parse_book_page(book_response(Book(id=7, title=title))).title == title


def test_mojibake_price_is_kept_for_cleaning():
    assert parse_book_page(book_response(Book(id=8, title="X", price="Â£12.50"))).price == "Â£12.50"


def test_missing_rating_and_price_are_none():
    item = parse_book_page(book_response(Book(id=9, title="X", rating=None, price=None)))
    assert item.rating is None
    assert item.price is None


def test_listing_yields_products_then_next_page():
    books = [Book(id=i, title=f"Book {i}") for i in (1, 2)]
    response = response_for(ROOT, listing_page(books, total=1000, page=1, pages=50, prefix="catalogue/"))
    spider = BooksSpider()
    spider.crawler = _crawler_with_stats()
    requests = list(spider.parse(response))
    assert all(isinstance(r, Request) for r in requests)
    assert [r.url for r in requests] == [
        ROOT + "catalogue/book-1_1/index.html",
        ROOT + "catalogue/book-2_2/index.html",
        ROOT + "catalogue/page-2.html",
    ]
    assert [r.callback for r in requests] == [spider.parse_book, spider.parse_book, spider.parse]
    assert spider.crawler.stats.get_value("books/expected") == 1000


def test_listing_tells_the_publication_which_books_the_site_lists():
    books = [Book(id=i, title=f"Book {i}") for i in (1, 2)]
    response = response_for(ROOT, listing_page(books, total=1000, page=1, pages=50, prefix="catalogue/"))
    spider = BooksSpider()
    spider.crawler = _crawler_with_stats()
    listed = []

    def books_listed(book_ids):
        listed.append(book_ids)

    spider.crawler.signals.connect(books_listed, signal=books_signals.books_listed)
    spider.parse(response)
    assert listed == [{1, 2}]


def test_last_listing_page_has_no_next():
    response = response_for(ROOT + "catalogue/page-50.html",
                            listing_page([Book(id=3, title="Last")], 1000, 50, 50, prefix=""))
    spider = BooksSpider()
    spider.crawler = _crawler_with_stats()
    assert [r.url for r in spider.parse(response)] == [ROOT + "catalogue/last_3/index.html"]


def test_result_count_one_result_category():
    response = response_for(ROOT + "catalogue/category/books/erotica_50/index.html",
                            listing_page([Book(id=4, title="Only")], total=1, page=1, pages=1, prefix=""))
    assert parse_result_count(page_tree(response)) == 1


def test_result_count_absent():
    assert parse_result_count(page_tree(response_for(ROOT, "<html><body>nothing</body></html>"))) is None


def _crawler_with_stats():
    from scrapy.utils.test import get_crawler

    crawler = get_crawler(BooksSpider)
    crawler.stats.open_spider()
    return crawler


def test_empty_or_foreign_page_gives_an_empty_record():
    for body in ("", "<html><body><p>Service unavailable</p></body></html>"):
        item = parse_book_page(response_for(ROOT + "catalogue/x_77/index.html", body))
        assert (item.id, item.upc, item.title, item.price, item.category) == (77, None, None, None, None)


def test_other_books_on_the_page_never_fill_a_missing_field():
    # Product pages end with other books (recently viewed). A field the book lacks makes the
    # spider read the whole page, which must still not take that field from another book.
    item = parse_book_page(book_response(Book(id=9, title="X", rating=None, price=None, description=None)))
    assert (item.title, item.rating, item.price, item.description) == ("X", None, None, None)


def test_product_information_after_the_other_books_is_still_read():
    book = Book(id=12, title="Moved Around", upc="u12")
    page = product_page(book)
    others = page[page.index('<div class="sub-header"><h2>Products you recently viewed') : page.index("</ol>") + 5]
    page = page.replace(others, "").replace('<div class="sub-header"><h2>Product Information', others + '<div class="sub-header"><h2>Product Information')
    assert page.index("recently viewed") < page.index("<table")
    item = parse_book_page(response_for(ROOT + book.path, page))
    assert (item.upc, item.price, item.availability, item.number_of_reviews) == ("u12", "£10.00", "In stock (5 available)", "0")


def test_encoding_from_the_content_type_header_wins_over_the_page():
    book = Book(id=13, title="Café crème")
    body = product_page(book).encode("iso-8859-1")  # the page itself still says UTF-8
    response = HtmlResponse(url=ROOT + book.path, body=body,
                            headers={"Content-Type": "text/html; charset=ISO-8859-1"})
    item = parse_book_page(response)
    assert (item.title, item.price) == ("Café crème", "£10.00")


def test_encoding_from_the_page_meta_without_a_header_charset():
    book = Book(id=14, title="Crème brûlée")
    body = product_page(book).replace("charset=UTF-8", "charset=windows-1252").encode("cp1252")
    response = HtmlResponse(url=ROOT + book.path, body=body, headers={"Content-Type": "text/html"})
    item = parse_book_page(response)
    assert (item.title, item.price) == ("Crème brûlée", "£10.00")


def test_a_binary_response_gives_an_empty_record_not_an_error():
    from scrapy.http import Response

    response = Response(url=ROOT + "catalogue/x_78/index.html", body=b"\x00\xff",
                        headers={"Content-Type": "application/octet-stream; charset=binary"})
    item = parse_book_page(response)
    assert (item.id, item.upc, item.title) == (78, None, None)
