"""Builds small copies of books.toscrape.com with the site's own markup, for self-contained tests."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

RATING_WORDS = ["Zero", "One", "Two", "Three", "Four", "Five"]


@dataclass
class Book:
    id: int
    title: str
    price: str = "£10.00"  # as the page shows it; None leaves the price out
    rating: str | None = "Three"
    availability: str = "In stock (5 available)"
    category: str = "Poetry"
    category_id: int = 23
    description: str | None = "A fine book."
    upc: str | None = None
    reviews: int = 0

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "book"

    @property
    def path(self) -> str:
        return f"catalogue/{self.slug}_{self.id}/index.html"

    @property
    def category_slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.category.lower()).strip("-")


# What the real product pages end with: other books, in listing markup, inside the product's article.
RECENTLY_VIEWED = [Book(id=999, title="Someone Else's Book", price="£99.99", rating="One",
                        availability="Out of stock", category="Fiction", category_id=10)]


def product_page(book: Book, recently_viewed: list[Book] = RECENTLY_VIEWED) -> str:
    e = html.escape
    rating = f'<p class="star-rating {book.rating}">' if book.rating else '<p class="rating">'
    price_row = f"<tr><th>Price (excl. tax)</th><td>{e(book.price)}</td></tr>" if book.price else ""
    price_line = f'<p class="price_color">{e(book.price)}</p>' if book.price else ""
    description = (
        f'<div id="product_description" class="sub-header"><h2>Product Description</h2></div>\n'
        f"<p>{e(book.description)}</p>"
        if book.description is not None
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en-us"><head><title>{e(book.title)} | Books to Scrape - Sandbox</title>
<meta http-equiv="content-type" content="text/html; charset=UTF-8" /></head>
<body><ul class="breadcrumb">
  <li><a href="../../index.html">Home</a></li>
  <li><a href="../category/books_1/index.html">Books</a></li>
  <li><a href="../category/books/{book.category_slug}_{book.category_id}/index.html">{e(book.category)}</a></li>
  <li class="active">{e(book.title)}</li>
</ul>
<article class="product_page"><div class="row">
<div class="col-sm-6"><div id="product_gallery" class="carousel"><div class="thumbnail">
<div class="carousel-inner"><div class="item active">
<img src="../../media/cache/{book.id:04d}.jpg" alt="{e(book.title)}" /></div></div></div></div></div>
<div class="col-sm-6 product_main"><h1>{e(book.title)}</h1>
{price_line}
<p class="instock availability"><i class="icon-ok"></i>
    {e(book.availability)}
</p>
{rating}<i class="icon-star"></i></p>
</div></div>
{description}
<div class="sub-header"><h2>Product Information</h2></div>
<table class="table table-striped">
<tr><th>UPC</th><td>{e(book.upc or f"upc{book.id:012d}")}</td></tr>
<tr><th>Product Type</th><td>Books</td></tr>
{price_row}
<tr><th>Price (incl. tax)</th><td>{e(book.price or "")}</td></tr>
<tr><th>Tax</th><td>£0.00</td></tr>
<tr><th>Availability</th><td>{e(book.availability)}</td></tr>
<tr><th>Number of reviews</th><td>{book.reviews}</td></tr>
</table>
<div class="sub-header"><h2>Products you recently viewed</h2></div>
<ol class="row">{product_pods(recently_viewed, prefix="../")}</ol>
</article></body></html>
"""


def product_pods(books: list[Book], prefix: str) -> str:
    """Books as the listing pages (and a product page's "recently viewed") show them."""
    e = html.escape
    return "\n".join(
        f"""<li class="col-xs-6 col-sm-4 col-md-3 col-lg-3"><article class="product_pod">
<p class="star-rating {book.rating or ''}"></p>
<h3><a href="{prefix}{book.slug}_{book.id}/index.html" title="{e(book.title)}">{e(book.title[:20])}...</a></h3>
<div class="product_price"><p class="price_color">{e(book.price or '')}</p></div>
</article></li>"""
        for book in books
    )


def listing_page(books: list[Book], total: int, page: int, pages: int, prefix: str) -> str:
    """A listing page; `prefix` is how product links start ('catalogue/' from the root page)."""
    pods = product_pods(books, prefix)
    word = "result" if total == 1 else "results"
    next_link = (
        f'<li class="next"><a href="{"catalogue/" if prefix else ""}page-{page + 1}.html">next</a></li>'
        if page < pages
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en-us"><head><title>All products | Books to Scrape - Sandbox</title></head>
<body><div class="page-header action"><h1>All products</h1></div>
<form method="get" class="form-horizontal">
    <strong>{total}</strong> {word} - showing <strong>1</strong> to <strong>20</strong>.
</form>
<section><ol class="row">
{pods}
</ol>
<div><ul class="pager"><li class="current">Page {page} of {pages}</li>{next_link}</ul></div>
</section></body></html>
"""


def build_site(root: Path, books: list[Book], per_page: int = 20) -> Path:
    """Write index.html, catalogue/page-N.html and every product page under root."""
    chunks = [books[i : i + per_page] for i in range(0, len(books), per_page)] or [[]]
    for number, chunk in enumerate(chunks, start=1):
        first = number == 1
        path = root / ("index.html" if first else f"catalogue/page-{number}.html")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            listing_page(chunk, len(books), number, len(chunks), "catalogue/" if first else ""),
            encoding="utf-8",
        )
    for book in books:
        page = root / book.path
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(product_page(book), encoding="utf-8")
    return root


def sample_books(count: int = 45) -> list[Book]:
    """A deterministic catalogue with the awkward cases of the real site mixed in."""
    categories = [("Poetry", 23), ("Travel", 2), ("Mystery", 3), ("Art", 25)]
    books = []
    for number in range(1, count + 1):
        name, category_id = categories[number % len(categories)]
        books.append(
            Book(
                id=number,
                title=f"Book number {number}",
                price=f"£{10 + number * 1.25:.2f}",
                rating=RATING_WORDS[1 + number % 5],
                availability=f"In stock ({number % 7 + 1} available)",
                category=name,
                category_id=category_id,
                description=None if number % 20 == 0 else f"Description of book {number}.",
            )
        )
    if count >= 4:
        books[1].title = "Café & \"Quotes\" — l'été"
        books[2].price = "Â£1,234.50"
        books[3].category, books[3].category_id = "Erotica", 50  # a one-book category
    return books
