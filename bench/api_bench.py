"""Latency and throughput of the main routes beside Datasette's trivial /-/versions.json, one server.

Starts `python -m books_scraper.serve` on a copy of a books database, then, in rounds, keeps CLIENTS
threads (one keep-alive connection each) requesting one route for SECONDS, route after route, the
trivial route in every round. Reports per route the median over rounds of throughput, p50 and p99
latency, and p50/p99 as ratios of the trivial route's in the same round.
Usage: python bench/api_bench.py [path/to/books.db] [--clients 20] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TRIVIAL = "/-/versions.json"
ROUTES = [
    "/api/v1/books?limit=20",
    "/api/v1/books/{book_id}",
    "/api/v1/stats/overview",
    "/api/v1/ml/features?limit=100",
    "/books/books.json?_size=20",
    "/books.json?sql=select+title,+price+from+books+order+by+price+desc+limit+10&_shape=array",
]
API_GOAL, TABLE_GOAL = 1.5, 3.0  # issue 11's goals, as multiples of the trivial route's latency


def goal(route: str) -> str:
    if route.startswith("/api/"):
        return f"≤ {API_GOAL}x"
    return f"≤ {TABLE_GOAL}x" if route.startswith("/books/books.json") else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def hammer(port: int, path: str, clients: int, seconds: float) -> tuple[list[float], int]:
    """Latencies of every request CLIENTS threads complete in SECONDS, and the count of errors."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                conn.request("GET", path)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    errors[0] += 1
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            mine.append(time.perf_counter() - started)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("books_db", type=Path, nargs="?", default=PROJECT / "data" / "books.db")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not args.books_db.exists():
        sys.exit(f"no books database at {args.books_db}: crawl first (make crawl) or pass a path")
    work = Path(tempfile.mkdtemp(prefix="api-bench-"))
    shutil.copyfile(args.books_db, work / "books.db")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
    command = [sys.executable, "-m", "books_scraper.serve", "--port", str(port),
               "--books-db", str(work / "books.db"), "--operations-db", str(work / "operations.db")]
    server = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        conn = None
        for _ in range(300):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", TRIVIAL)
                conn.getresponse().read()
                break
            except OSError:
                time.sleep(0.1)
        conn.request("GET", "/books.json?sql=select+min(id)+from+books&_shape=arrayfirst")
        book_id = conn.getresponse().read().decode().strip("[]\n ")
        routes = [route.format(book_id=book_id) for route in ROUTES]
        results: dict[str, list[dict]] = {route: [] for route in [TRIVIAL, *routes]}
        for route in results:  # warm every route (caches, first-request work)
            hammer(port, route, 2, 0.5)
        for _ in range(args.rounds):
            trivial, trivial_errors = hammer(port, TRIVIAL, args.clients, args.seconds)
            base50, base99 = percentile(trivial, 0.5), percentile(trivial, 0.99)
            results[TRIVIAL].append({"rps": len(trivial) / args.seconds, "p50": base50, "p99": base99,
                                     "r50": 1.0, "r99": 1.0, "errors": trivial_errors})
            for route in routes:
                latencies, errors = hammer(port, route, args.clients, args.seconds)
                p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
                results[route].append({"rps": len(latencies) / args.seconds, "p50": p50, "p99": p99,
                                       "r50": p50 / base50, "r99": p99 / base99, "errors": errors})
        print(f"{args.clients} clients, {args.seconds:g} s per route, median of {args.rounds} rounds\n")
        print("| route | req/s | p50 ms | p99 ms | p50 ratio | p99 ratio | goal | errors |")
        print("|---|---|---|---|---|---|---|---|")
        for route, rounds in results.items():
            med = {key: statistics.median(r[key] for r in rounds) for key in ("rps", "p50", "p99", "r50", "r99")}
            print(f"| `{route}` | {med['rps']:.0f} | {med['p50'] * 1000:.1f} | {med['p99'] * 1000:.1f} | "
                  f"{med['r50']:.2f}x | {med['r99']:.2f}x | {goal(route)} | {sum(r['errors'] for r in rounds)} |")
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
