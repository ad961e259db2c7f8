"""Bench-only extensions that time a crawl's phases apart, for bench/crawl_scale.py.

`CrawlTiming` (listed before books_scraper.publication.Publication) marks the spider opening and
the spider closing, after the store pipeline wrote its last books and before the publication; every
second it samples the books scraped, the requests waiting in the scheduler and the process's
resident memory. `PublicationTiming` (listed after Publication) marks the end of the publication
and writes everything as JSON to BENCH_TIMING_PATH. Neither is enabled outside the benchmark.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.asyncio import create_looping_call

PAGE_SIZE = resource.getpagesize()
MARKS: dict[str, dict[str, float]] = {}  # shared by the two extensions of one crawl process
SAMPLES: list[dict[str, float]] = []


def mark(name: str) -> None:
    MARKS[name] = {"wall": time.perf_counter(), "cpu": time.process_time(), "rss_mb": rss_mb(),
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE / 2**20


class CrawlTiming:
    def __init__(self, crawler: Crawler) -> None:
        self.stats = crawler.stats
        self.timer: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "CrawlTiming":
        if not crawler.settings.get("BENCH_TIMING_PATH"):
            raise NotConfigured
        extension = cls(crawler)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        mark("opened")
        self.timer = create_looping_call(self.sample)
        self.timer.start(1.0, now=False)

    def sample(self) -> None:
        stats = self.stats.get_stats()
        SAMPLES.append({
            "seconds": round(time.perf_counter() - MARKS["opened"]["wall"], 1),
            "books": stats.get("item_scraped_count", 0),
            "queued": stats.get("scheduler/enqueued", 0) - stats.get("scheduler/dequeued", 0),
            "rss_mb": round(rss_mb(), 1),
        })

    def spider_closed(self) -> None:
        if self.timer is not None and self.timer.running:
            self.timer.stop()
        mark("closing")  # pipelines closed: every book is written; the publication comes next


class PublicationTiming:
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> "PublicationTiming":
        path = crawler.settings.get("BENCH_TIMING_PATH")
        if not path:
            raise NotConfigured
        extension = cls(path)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_closed(self) -> None:
        mark("published")
        self.path.write_text(json.dumps({"marks": MARKS, "samples": SAMPLES}))
