"""Scraping jobs: /api/v1/scraping/* routes, the startup check of lost jobs and BOOKS_CRAWL_EVERY, and
the scheduled crawls started on the serving loop (books_scraper/api/scraping.py)."""

from datasette import hookimpl

from books_scraper.api import scraping


@hookimpl
def register_routes():
    return scraping.ROUTES


@hookimpl
def startup(datasette):
    return scraping.startup(datasette)


@hookimpl
def asgi_wrapper(datasette):
    return scraping.schedule_wrapper(datasette)
