"""Scrapy settings for the books crawler: polite defaults for the live site."""

import os
from importlib.metadata import PackageNotFoundError, version

from books_scraper.items import RECORD_FIELDS

BOT_NAME = "books_scraper"
SPIDER_MODULES = ["books_scraper.spiders"]
NEWSPIDER_MODULE = "books_scraper.spiders"
COMMANDS_MODULE = "books_scraper.commands"

# Where to crawl and where the database goes; both overridable with -s or the environment.
BOOKS_START_URL = os.environ.get("BOOKS_START_URL", "https://books.toscrape.com/")
BOOKS_DB_PATH = os.environ.get("BOOKS_DB_PATH", "data/books.db")
BOOKS_OPS_DB_PATH = os.environ.get("BOOKS_OPS_DB_PATH", "data/operations.db")
# Publish even when the crawl found fewer than half the books already published.
BOOKS_ALLOW_SHRINK = os.environ.get("BOOKS_ALLOW_SHRINK", "0")
BOOKS_WRITE_BATCH = 200
BOOKS_PROGRESS_EVERY_BOOKS = 100
BOOKS_PROGRESS_EVERY_SECONDS = 10
# Set by a scraping job (books_scraper/jobs.py) with -s: the crawl reports to that row of scrape_jobs.
BOOKS_JOB_ID = 0
BOOKS_JOB_REPORT_SECONDS = 2
# Logs: text for a person at a terminal, json for a log collector (books_scraper/logs.py).
BOOKS_LOG_FORMAT = os.environ.get("BOOKS_LOG_FORMAT", "text")



def user_agent(contact: str | None) -> str:
    """The crawler names itself truthfully: project and version, and how to reach its operator."""
    try:
        release = version("books-scraper")
    except PackageNotFoundError:  # run from a checkout that was never installed
        release = "dev"
    return f"books-scraper/{release}" + (f" (+{contact})" if contact else "")


# Who runs this crawl: a URL or an e-mail address site owners can reach (env BOOKS_CONTACT).
BOOKS_CONTACT = os.environ.get("BOOKS_CONTACT", "")
USER_AGENT = user_agent(BOOKS_CONTACT)
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 8
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 30
# A page yields at most ~21 objects and the pipelines are synchronous, so items gain nothing from
# being processed in parallel: Scrapy starts this many asyncio tasks per response (its default of
# 100 cost ~0.1 ms per response; 16 still ~0.1 ms against ~0.03 ms for 1).
CONCURRENT_ITEMS = 1
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 0.5
AUTOTHROTTLE_MAX_DELAY = 10
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0
RETRY_ENABLED = True
RETRY_TIMES = 3
RETRY_HTTP_CODES = [500, 502, 503, 504, 522, 524, 408, 429]
# A 429 or 503 with Retry-After is retried after that many seconds, up to this bound.
BOOKS_RETRY_AFTER_MAX = 60
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "books_scraper.middlewares.RetryAfterMiddleware": 550,
}
HTTPCACHE_ENABLED = False
HTTPCACHE_DIR = "httpcache"
# No remote code execution during a crawl: Scrapy 2.19's remote-control server (on by default) runs
# code sent to it and leaves job files under ~/.local/state/scrapy/; the telnet console does the same.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
COOKIES_ENABLED = False

ITEM_PIPELINES = {
    "books_scraper.pipelines.CleanPipeline": 100,
    "books_scraper.pipelines.ValidatePipeline": 200,
    "books_scraper.pipelines.StorePipeline": 300,
}
EXTENSIONS = {
    "books_scraper.extensions.ProgressLog": 500,
    "books_scraper.publication.Publication": 600,
    "books_scraper.extensions.JobReport": 700,  # after Publication: reads its outcome at close
    "scrapy.extensions.remote_control.RemoteControl": None,
    "scrapy.extensions.telnet.TelnetConsole": None,
}

# Skips building the per-item DEBUG log line when DEBUG is not shown (books_scraper/logformatter.py).
LOG_FORMATTER = "books_scraper.logformatter.BooksLogFormatter"

FEED_EXPORT_FIELDS = RECORD_FIELDS
FEED_EXPORT_ENCODING = "utf-8"
LOG_LEVEL = os.environ.get("BOOKS_LOG_LEVEL", "INFO")
