"""The books table's facets over the whole table from its publication's counts (books_scraper/web/published_facets.py)."""

from datasette import hookimpl

from books_scraper.web.published_facets import PublishedFacet


@hookimpl
def register_facet_classes():
    return [PublishedFacet]
