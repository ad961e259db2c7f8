"""The crawl's own signals, sent like Scrapy's through `crawler.signals` (arguments in comments)."""

# book_ids: the books one listing page lists.
books_listed = object()
# book_id: a product page answered 404 or 410, so the site no longer has that book.
book_gone = object()
# path, run_id: the staging database the store pipeline writes this run's books into.
staging_opened = object()
