"""Full `scrapy crawl books` against a bare fetch of the same pages, in alternating pairs.

Serves the real site's copy (../shared/fixtures/books.toscrape.com) on 127.0.0.1 with nginx
(bench/site_server.py; Python's http.server where nginx is absent, with a note) and reports, per
variant, the median wall time, CPU time (user+sys of the crawl process), pages/s and peak memory,
and the full/bare ratios as the median of each pair's ratio.
Usage: python bench/crawl_bench.py [--runs 5] [--concurrency 16] [--server nginx|python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from site_server import serve_site

PROJECT = Path(__file__).resolve().parents[1]
SITE = PROJECT.parent / "shared" / "fixtures" / "books.toscrape.com"
sys.path.insert(0, str(PROJECT))  # books_scraper, for its settings


def page_urls(site: Path, base: str) -> list[str]:
    """The pages the books spider visits: the root, listing pages 2..N, every product page."""
    catalogue = site / "catalogue"
    listings = sorted(catalogue.glob("page-*.html"), key=lambda p: int(p.stem.split("-")[1]))
    products = sorted(p.parent for p in catalogue.glob("*/index.html") if p.parent.name != "category")
    return (
        [base]
        + [f"{base}catalogue/{p.name}" for p in listings if p.name != "page-1.html"]
        + [f"{base}catalogue/{p.name}/index.html" for p in products]
    )


def run(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Wall, CPU and peak memory of one crawl process (os.wait4 gives that process's own usage);
    `started` and `ended` are perf_counter() readings, comparable with crawl_timing's marks."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.perf_counter()
    if status != 0:
        sys.exit(f"{' '.join(command[2:5])} failed:\n{stderr.decode()[-3000:]}")
    return {
        "wall": ended - started, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
        "started": started, "ended": ended,
    }


# The crawl with bench/crawl_timing.py's two extensions around the publication (bench only).
TIMING_EXTENSIONS = {"crawl_timing.CrawlTiming": 590, "crawl_timing.PublicationTiming": 610}


def timed(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Settings and environment that make `scrapy crawl books` write its phases to `path`."""
    from books_scraper.settings import EXTENSIONS

    settings = {"BENCH_TIMING_PATH": str(path), "EXTENSIONS": json.dumps({**EXTENSIONS, **TIMING_EXTENSIONS})}
    return settings, {**os.environ, "PYTHONPATH": str(PROJECT / "bench")}


def phases(path: Path, measured: dict[str, float]) -> dict:
    """Start-up, crawl (until the last book is written) and publication, wall and CPU seconds."""
    timing = json.loads(path.read_text())
    m = timing["marks"]
    return {
        "startup_wall": m["opened"]["wall"] - measured["started"],
        "startup_cpu": m["opened"]["cpu"],
        "crawl_wall": m["closing"]["wall"] - m["opened"]["wall"],
        "crawl_cpu": m["closing"]["cpu"] - m["opened"]["cpu"],
        "publication_wall": m["published"]["wall"] - m["closing"]["wall"],
        "publication_cpu": m["published"]["cpu"] - m["closing"]["cpu"],
        "peak_rss_before_publication_mb": m["closing"]["peak_rss_mb"],
        "rss_at_open_mb": m["opened"]["rss_mb"],
        "samples": timing["samples"],
    }


def crawl_settings(concurrency: int) -> dict[str, str]:
    """What every measured crawl runs with: no AutoThrottle, the given concurrency, quiet logs."""
    return {
        "AUTOTHROTTLE_ENABLED": "0",
        "CONCURRENT_REQUESTS": str(concurrency),
        "CONCURRENT_REQUESTS_PER_DOMAIN": str(concurrency),
        "LOG_LEVEL": "WARNING",
    }


def settings_args(settings: dict[str, str]) -> list[str]:
    return [arg for name, value in settings.items() for arg in ("-s", f"{name}={value}")]


def full_crawl(work: Path, index: int) -> list[str]:
    """`scrapy crawl books` into a new books database in `work`, beside one operations database."""
    databases = {"BOOKS_DB_PATH": f"{work}/books-{index}.db", "BOOKS_OPS_DB_PATH": f"{work}/operations.db"}
    return [sys.executable, "-m", "scrapy", "crawl", "books", *settings_args(databases)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="pairs of runs (default 5)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", choices=("nginx", "python"), default="nginx")
    parser.add_argument("--site", type=Path, default=SITE, help="default: the real site's copy")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    options = parser.parse_args()
    if not options.site.is_dir():
        sys.exit(f"the site is absent: {options.site}")

    common = crawl_settings(options.concurrency)
    results: dict[str, list[dict[str, float]]] = {"full": [], "bare": []}
    with serve_site(options.site, options.server, options.port) as served, tempfile.TemporaryDirectory() as work:
        urls = Path(work) / "urls.txt"
        pages = page_urls(options.site, served.url)
        urls.write_text("\n".join(pages))
        scrapy = [sys.executable, "-m", "scrapy"]
        for index in range(options.runs):
            full = full_crawl(Path(work), index) + settings_args({**common, "BOOKS_START_URL": served.url})
            bare = scrapy + ["runspider", "bench/bare_spider.py", "-a", f"urls={urls}"] + settings_args(common)
            # Alternate which goes first so drift on the machine hits both alike.
            order = [("full", full), ("bare", bare)] if index % 2 == 0 else [("bare", bare), ("full", full)]
            for name, command in order:
                results[name].append(run(command))
                print(f"pair {index + 1} {name}: {results[name][-1]}", file=sys.stderr)
    report(results, len(pages), served, options)


def paired_ratio(results: dict[str, list[dict[str, float]]], key: str) -> tuple[float, float, float]:
    """Median, lowest and highest of full/bare over the pairs (each pair ran back to back)."""
    ratios = [full[key] / bare[key] for full, bare in zip(results["full"], results["bare"])]
    return statistics.median(ratios), min(ratios), max(ratios)


def report(results: dict[str, list[dict[str, float]]], pages: int, served, options: argparse.Namespace) -> None:
    median = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    print(f"{pages} pages, {options.runs} alternating pairs, concurrency {options.concurrency}, "
          f"served by {served.server}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    if served.note:
        print(f"NOTE: {served.note}\n")
    print("| variant | wall s (median) | CPU s (median) | pages/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for name in ("bare", "full"):
        m = median[name]
        print(f"| {name} | {m['wall']:.2f} | {m['cpu']:.2f} | {pages / m['wall']:.0f} | {m['rss_mb']:.0f} |")
    wall, cpu, rss = (paired_ratio(results, key) for key in ("wall", "cpu", "rss_mb"))
    print(f"| full / bare, median of the paired ratios | {wall[0]:.2f}x | {cpu[0]:.2f}x | | {rss[0]:.2f}x |")
    print(f"| full / bare, range over the pairs | {wall[1]:.2f}x–{wall[2]:.2f}x | {cpu[1]:.2f}x–{cpu[2]:.2f}x | | |")


if __name__ == "__main__":
    main()
