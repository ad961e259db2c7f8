"""Where the full crawl's extra CPU time goes: each stage of it against the bare fetch, interleaved.

Serves the real site's copy like crawl_bench.py (nginx) and runs, in turn and alternating the order:
bare fetch, follow (listing pages parsed, product pages fetched but not read), parse (product pages
parsed too), items (records handed to Scrapy, no pipelines) and full (`scrapy crawl books`).
Each stage's ratio to the bare fetch is the median of its ratios within each round of runs.
Usage: python bench/breakdown.py [--runs 7] [--concurrency 16] [--server nginx|python]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from crawl_bench import SITE, crawl_settings, full_crawl, page_urls, phases, run, settings_args, timed
from site_server import serve_site

STAGES = [
    ("bare", "the bare fetch of the same 1050 URLs"),
    ("follow", "listing pages parsed, product links followed"),
    ("parse", "product pages parsed into records"),
    ("items", "records handed to Scrapy's item path (no pipelines)"),
    ("store", "clean, validate, store (the full crawl less its publication)"),
    ("full", "publish (FTS, indexes, aggregates, fsync, swap): `scrapy crawl books`"),
]
RUN = ("bare", "follow", "parse", "items", "full")  # "store" is read from inside the full crawl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", choices=("nginx", "python"), default="nginx")
    options = parser.parse_args()
    if not SITE.is_dir():
        sys.exit(f"the real site's copy is absent: {SITE}")
    measured: dict[str, list[dict[str, float]]] = {name: [] for name, _ in STAGES}
    with serve_site(SITE, options.server) as served, tempfile.TemporaryDirectory() as work:
        common = {**crawl_settings(options.concurrency), "BOOKS_START_URL": served.url}
        urls = Path(work) / "urls.txt"
        urls.write_text("\n".join(page_urls(SITE, served.url)))
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
            timing_path = Path(work) / f"timing-{index}.json"
            timing, env = timed(timing_path)
            for name in RUN if index % 2 == 0 else reversed(RUN):
                extra = timing if name == "full" else {}
                measured[name].append(run(commands[name] + settings_args({**common, **extra}), env=env))
                print(f"round {index + 1} {name}: {measured[name][-1]}", file=sys.stderr)
            # The store stage: the same full crawl, its publication's wall and CPU time taken off.
            full = measured["full"][-1]
            publication = phases(timing_path, full)
            measured["store"].append({
                "wall": full["wall"] - publication["publication_wall"],
                "cpu": full["cpu"] - publication["publication_cpu"],
            })

    print(f"{options.runs} rounds, alternating the order, concurrency {options.concurrency}, "
          f"served by {served.server}; medians\n")
    if served.note:
        print(f"NOTE: {served.note}\n")
    print("| stage | CPU s | added | CPU / bare | wall s | wall / bare |")
    print("|---|---|---|---|---|---|")
    previous = 0.0
    for name, what in STAGES:
        cpu = statistics.median(r["cpu"] for r in measured[name])
        wall = statistics.median(r["wall"] for r in measured[name])
        added = "" if name == "bare" else f"{cpu - previous:+.2f}"
        print(f"| {name}: {what} | {cpu:.2f} | {added} | {paired(measured, name, 'cpu'):.2f}x "
              f"| {wall:.2f} | {paired(measured, name, 'wall'):.2f}x |")
        previous = cpu


def paired(measured: dict[str, list[dict[str, float]]], name: str, key: str) -> float:
    """The median over the rounds of this stage's figure over the bare fetch's in the same round."""
    return statistics.median(r[key] / bare[key] for r, bare in zip(measured[name], measured["bare"]))


if __name__ == "__main__":
    main()
