"""Datasette's search page on the books table at any size (books_scraper/web/search_page.py)."""

from datasette import hookimpl

from books_scraper.web.search_page import broad_search, broad_search_vars, search_order


@hookimpl
def asgi_wrapper(datasette):
    return lambda app: broad_search(datasette, app)


@hookimpl
def filters_from_request(request, database, table, datasette):
    return search_order(request, database, table, datasette)


@hookimpl
def extra_template_vars(template, database, table, request, datasette):
    return broad_search_vars(template, database, table, request, datasette)
