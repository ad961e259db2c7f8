"""Where the full crawl's extra CPU time goes: each stage of it against the bare fetch, interleaved.

Serves the real site's copy like crawl_bench.py and runs, in turn and alternating the order:
bare fetch, follow (listing pages parsed, product pages fetched but not read), parse (product pages
parsed too), items (records handed to Scrapy, no pipelines) and full (`scrapy crawl books`).
Usage: python bench/breakdown.py [--runs 7] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from crawl_bench import (
    SITE,
    crawl_settings,
    free_port,
    full_crawl,
    page_urls,
    run,
    serve_site,
    settings_args,
)

STAGES = [
    ("bare", "the bare fetch of the same 1050 URLs"),
    ("follow", "listing pages parsed, product links followed"),
    ("parse", "product pages parsed into records"),
    ("items", "records handed to Scrapy's item path (no pipelines)"),
    ("full", "clean, validate, store, publish: `scrapy crawl books`"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16)
    options = parser.parse_args()
    if not SITE.is_dir():
        sys.exit(f"the real site's copy is absent: {SITE}")
    cpu: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    with serve_site(free_port()) as base, tempfile.TemporaryDirectory() as work:
        common = {**crawl_settings(options.concurrency), "BOOKS_START_URL": base}
        urls = Path(work) / "urls.txt"
        urls.write_text("\n".join(page_urls(base)))
        scrapy = [sys.executable, "-m", "scrapy"]
        for index in range(options.runs):
            commands = {
                "bare": scrapy + ["runspider", "bench/bare_spider.py", "-a", f"urls={urls}"],
                "full": full_crawl(Path(work), index),
                **{
                    stage: scrapy + ["runspider", "bench/stage_spider.py", "-a", f"stage={stage}"]
                    for stage in ("follow", "parse", "items")
                },
            }
            order = [name for name, _ in STAGES]
            for name in order if index % 2 == 0 else reversed(order):
                cpu[name].append(run(commands[name] + settings_args(common))["cpu"])
                print(f"run {index + 1} {name}: {cpu[name][-1]:.2f} s", file=sys.stderr)

    print(f"{options.runs} interleaved runs each, concurrency {options.concurrency}; CPU seconds, median\n")
    print("| stage | CPU s | added | / bare |")
    print("|---|---|---|---|")
    bare = previous = statistics.median(cpu["bare"])
    for name, what in STAGES:
        median = statistics.median(cpu[name])
        added = "" if name == "bare" else f"{median - previous:+.2f}"
        print(f"| {name}: {what} | {median:.2f} | {added} | {median / bare:.2f}x |")
        previous = median


if __name__ == "__main__":
    main()
