"""The books spider with the later stages of the full crawl switched off, for bench/breakdown.py.

`-a stage=follow` walks the listings and fetches every product page without reading it; `parse`
also parses each product page; `items` also hands the records to Scrapy (no pipelines). The full
crawl (clean, validate, store, publish) is `scrapy crawl books` itself.
"""

from books_scraper.spiders.books import BooksSpider, parse_book_page


class StageSpider(BooksSpider):
    name = "books_stage"
    custom_settings = {"ITEM_PIPELINES": {}, "EXTENSIONS": {}}
    stage = "items"

    def parse_book(self, response):
        if self.stage == "follow":
            return None
        item = parse_book_page(response)
        return item if self.stage == "items" else None
