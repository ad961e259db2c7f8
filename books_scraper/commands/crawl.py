"""`scrapy crawl`, which also fails (exit 1, one-line reason) when the crawl was not published."""

from __future__ import annotations

import argparse
import sys

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError

from books_scraper import crawlstats
from books_scraper.logs import configure_crawl_logging


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)
        # Before Scrapy's first line: with BOOKS_LOG_FORMAT=json every line is JSON (books_scraper/logs.py).
        configure_crawl_logging(self.settings)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give exactly one spider name")
        assert self.crawler_process
        crawler = self.crawler_process.create_crawler(args[0])
        self.crawler_process.crawl(crawler, **opts.spargs)
        self.crawler_process.start()
        # The Publication extension's outcome; None when it is not enabled in this crawl.
        status = crawler.stats.get_value(crawlstats.PUBLISH_STATUS)
        reason = crawler.stats.get_value(crawlstats.PUBLISH_REASON)
        if self.crawler_process.bootstrap_failed:
            self.fail(reason or "the crawl could not start (see the log)")
        elif status not in (None, crawlstats.PUBLISHED):
            outcome = "cancelled" if status == crawlstats.CANCELLED else "failed"
            self.fail(reason or "the database was not published (see the log)", outcome)

    def fail(self, reason: str, outcome: str = "failed") -> None:
        print(f"crawl {outcome}: {reason}", file=sys.stderr)  # either way nothing was published: exit 1
        self.exitcode = 1
