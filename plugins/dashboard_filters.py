"""The dashboards' filters name their empty choice (books_scraper/web/dashboard_filters.py)."""

from datasette import hookimpl

from books_scraper.web.dashboard_filters import blank_label_script


@hookimpl
def extra_body_script(template, request, datasette):
    return blank_label_script(template, request, datasette)
