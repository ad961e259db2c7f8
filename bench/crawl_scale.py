"""The full crawl at 1k and 100k books: books/s and peak memory, the publication timed apart.

Builds generated copies of the site (tests/sitebuilder.py, the site's own markup: 20 books per
listing page, one product page per book) under --sites, once (a finished site is kept and reused),
serves them with nginx on 127.0.0.1 (bench/site_server.py) and runs `scrapy crawl books` on each
size in turn, alternating the order each round. bench/crawl_timing.py marks, inside the crawl
process, when the spider opens, when the last book is written (before the publication) and when the
publication is done, and samples books, queued requests and resident memory every second.

Usage: python bench/crawl_scale.py [--books 1000,100000] [--rounds 2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from crawl_bench import PROJECT, crawl_settings, phases, run, settings_args, timed
from site_server import serve_site

sys.path.insert(0, str(PROJECT / "tests"))
from sitebuilder import build_site, sample_books  # noqa: E402 (the tests' generator of sites)

DONE = ".complete"  # written last: a site without it was cut short and is built again


def ensure_site(sites: Path, books: int) -> Path:
    """sites/<books>: a generated site of that many books, built once."""
    root = sites / str(books)
    if (root / DONE).exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    print(f"building a site of {books} books in {root} ...", file=sys.stderr)
    build_site(root, sample_books(books))
    for directory in (sites, root):
        directory.chmod(0o755)  # nginx runs as nobody
    (root / DONE).write_text(f"{books}\n")
    print(f"built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return root


def crawl(url: str, work: Path, name: str, concurrency: int, keep: bool = False) -> dict:
    """One `scrapy crawl books` of the site at `url` into work/<name>.db (removed after unless
    `keep`): its own usage, its phases, what it published."""
    timing = work / f"{name}-{time.time_ns()}.json"
    books_db = work / f"{name}.db"
    timing_settings, env = timed(timing)
    settings = {
        **crawl_settings(concurrency),
        "BOOKS_START_URL": url,
        "BOOKS_DB_PATH": str(books_db),
        "BOOKS_OPS_DB_PATH": str(work / "operations.db"),
        **timing_settings,
    }
    measured = run([sys.executable, "-m", "scrapy", "crawl", "books", *settings_args(settings)], env=env)
    books = count_books(books_db)
    for leftover in [] if keep else work.glob(f"{name}.db*"):
        leftover.unlink()
    return {
        "books": books,
        "wall": measured["wall"],
        "cpu": measured["cpu"],
        "peak_rss_mb": measured["rss_mb"],
        **phases(timing, measured),
    }


def count_books(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("select count(*) from books").fetchone()[0]
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", default="1000,100000", help="site sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="crawls of each size, alternating the order")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", choices=("nginx", "python"), default="nginx")
    parser.add_argument("--sites", type=Path, default=Path(tempfile.gettempdir()) / "books-scale-sites")
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument("--again", action="store_true",
                        help="after each crawl, crawl the same site again into its database (a re-crawl)")
    options = parser.parse_args()
    sizes = [int(size) for size in options.books.split(",")]

    options.sites.mkdir(parents=True, exist_ok=True)
    for books in sizes:
        ensure_site(options.sites, books)
    # "1000": a first crawl into a new database; "1000 again": the same site crawled again into the
    # database that first crawl published (every book rewritten through its indexes and FTS triggers).
    results: dict[str, list[dict]] = {}
    with serve_site(options.sites, options.server) as served, tempfile.TemporaryDirectory() as work:
        for round_ in range(options.rounds):
            for books in sizes if round_ % 2 == 0 else list(reversed(sizes)):
                url, name = f"{served.url}{books}/", f"crawl-{books}-{round_}"
                crawls = [(str(books), True), (f"{books} again", False)] if options.again else [(str(books), False)]
                for label, keep in crawls:
                    result = crawl(url, Path(work), name, options.concurrency, keep=keep)
                    results.setdefault(label, []).append(result)
                    brief = {k: round(v, 2) for k, v in result.items() if k != "samples"}
                    print(f"round {round_ + 1}, {label}: {brief}", file=sys.stderr)
    if options.json:
        options.json.write_text(json.dumps(results, indent=1))
    report(results, served, options, str(max(sizes)))


def report(results: dict[str, list[dict]], served, options: argparse.Namespace, largest: str) -> None:
    print(f"{options.rounds} rounds, concurrency {options.concurrency}, served by {served.server}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; medians\n")
    if served.note:
        print(f"NOTE: {served.note}\n")
    print("| crawl | whole run s | books/s (whole run) | crawl s | books/s (crawl) | books per CPU s (crawl) "
          "| publication s (CPU s) | peak RSS MB (before publication) |")
    print("|---|---|---|---|---|---|---|---|")
    for label, runs in results.items():
        med = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "samples"}
        print(f"| {label} | {med['wall']:.1f} | {med['books'] / med['wall']:.0f} "
              f"| {med['crawl_wall']:.1f} | {med['books'] / med['crawl_wall']:.0f} "
              f"| {med['books'] / med['crawl_cpu']:.0f} "
              f"| {med['publication_wall']:.2f} ({med['publication_cpu']:.2f}) "
              f"| {med['peak_rss_mb']:.0f} ({med['peak_rss_before_publication_mb']:.0f}) |")
    print(f"\nResident memory during one crawl of {largest} books (every tenth of the crawl):\n")
    samples = results[largest][-1]["samples"]
    step = max(1, len(samples) // 10)
    print("| s | books | requests queued | RSS MB |")
    print("|---|---|---|---|")
    for sample in samples[::step] + samples[-1:]:
        print(f"| {sample['seconds']:.0f} | {sample['books']} | {sample['queued']} | {sample['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
