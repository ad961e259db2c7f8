"""The book record: one item per product page."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class BookItem:
    id: int | None = None
    upc: str | None = None
    title: str | None = None
    price: float | str | None = None
    price_incl_tax: float | str | None = None
    tax: float | str | None = None
    currency: str | None = None
    rating: int | str | None = None
    availability: str | None = None
    in_stock: bool | None = None
    stock_count: int | None = None
    category: str | None = None
    description: str | None = None
    product_type: str | None = None
    number_of_reviews: int | str | None = None
    image_url: str | None = None
    product_url: str | None = None
    scraped_at: str | None = None
    # Not part of the exported record (see RECORD_FIELDS): where the category lives on the site,
    # from which the store derives the category's id, slug and URL.
    category_url: str | None = field(default=None, repr=False)


# The clean record as exported by `scrapy crawl books -O books.csv` (FEED_EXPORT_FIELDS).
RECORD_FIELDS: list[str] = [f.name for f in fields(BookItem) if f.name != "category_url"]
