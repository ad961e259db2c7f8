"""The baseline: fetch the pages the books spider fetches, with the same concurrency, parse nothing.

Run by bench/crawl_bench.py as `scrapy runspider bench/bare_spider.py -a urls=FILE`.
"""

from pathlib import Path

import scrapy


class BareSpider(scrapy.Spider):
    name = "bare"
    custom_settings = {"ITEM_PIPELINES": {}, "EXTENSIONS": {}}

    async def start(self):
        for url in Path(self.urls).read_text().split():
            yield scrapy.Request(url, callback=self.parse)

    def parse(self, response):
        return None
