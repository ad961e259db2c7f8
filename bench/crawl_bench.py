"""Full `scrapy crawl books` against a bare fetch of the same pages, interleaved in one run.

Serves the real site's copy (../shared/fixtures/books.toscrape.com) on 127.0.0.1 and reports, per
variant, the median wall time, CPU time (user+sys of the crawl process), pages/s and peak memory,
and the full/bare ratios. Usage: python bench/crawl_bench.py [--runs 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SITE = PROJECT.parent / "shared" / "fixtures" / "books.toscrape.com"


def page_urls(base: str) -> list[str]:
    """The pages the books spider visits: the root, listing pages 2..N, every product page."""
    catalogue = SITE / "catalogue"
    listings = sorted(catalogue.glob("page-*.html"), key=lambda p: int(p.stem.split("-")[1]))
    products = sorted(p.parent for p in catalogue.glob("*/index.html") if p.parent.name != "category")
    return (
        [base]
        + [f"{base}catalogue/{p.name}" for p in listings if p.name != "page-1.html"]
        + [f"{base}catalogue/{p.name}/index.html" for p in products]
    )


def run(command: list[str]) -> dict[str, float]:
    """Wall, CPU and peak memory of one crawl process (os.wait4 gives that process's own usage)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        sys.exit(f"{command[3]} failed:\n{stderr.decode()[-2000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"the local copy of the site did not come up at {url}")
            time.sleep(0.2)


@contextmanager
def serve_site(port: int) -> Iterator[str]:
    """The real site's copy served on 127.0.0.1 by `python -m http.server`; yields its base URL."""
    base = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(SITE), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_serving(base)
        if server.poll() is not None:
            sys.exit(f"could not serve the site on port {port}")
        yield base
    finally:
        server.terminate()
        server.wait()


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
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    options = parser.parse_args()
    if not SITE.is_dir():
        sys.exit(f"the real site's copy is absent: {SITE}")

    common = crawl_settings(options.concurrency)
    results: dict[str, list[dict[str, float]]] = {"full": [], "bare": []}
    with serve_site(options.port or free_port()) as base, tempfile.TemporaryDirectory() as work:
        urls = Path(work) / "urls.txt"
        urls.write_text("\n".join(page_urls(base)))
        pages = len(page_urls(base))
        scrapy = [sys.executable, "-m", "scrapy"]
        for index in range(options.runs):
            full = full_crawl(Path(work), index) + settings_args({**common, "BOOKS_START_URL": base})
            bare = scrapy + ["runspider", "bench/bare_spider.py", "-a", f"urls={urls}"] + settings_args(common)
            # Alternate which goes first so drift on the machine hits both alike.
            order = [("full", full), ("bare", bare)] if index % 2 == 0 else [("bare", bare), ("full", full)]
            for name, command in order:
                results[name].append(run(command))
                print(f"run {index + 1} {name}: {results[name][-1]}", file=sys.stderr)
    report(results, pages, options)


def report(results: dict[str, list[dict[str, float]]], pages: int, options: argparse.Namespace) -> None:
    median = {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}
    print(f"{pages} pages, {options.runs} interleaved runs each, concurrency {options.concurrency}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print("| variant | wall s (median) | CPU s (median) | pages/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for name in ("bare", "full"):
        m = median[name]
        print(f"| {name} | {m['wall']:.2f} | {m['cpu']:.2f} | {pages / m['wall']:.0f} | {m['rss_mb']:.0f} |")
    print(f"| full / bare | {median['full']['wall'] / median['bare']['wall']:.2f}x "
          f"| {median['full']['cpu'] / median['bare']['cpu']:.2f}x | | "
          f"{median['full']['rss_mb'] / median['bare']['rss_mb']:.2f}x |")


if __name__ == "__main__":
    main()
