"""Table pages name a labelled foreign key by its label (books_scraper/web/facet_labels.py)."""

from datasette import hookimpl

from books_scraper.web.facet_labels import table_page_vars


@hookimpl
def extra_template_vars(template, database, table, request, datasette):
    return table_page_vars(template, database, table, request, datasette)
