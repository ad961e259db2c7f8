"""How the server holds up while anonymous `?sql=` queries ask for as much as they may.

Starts `python -m books_scraper.serve` on a copy of a books database, then samples
`/api/v1/health` sequentially, first on an idle server, then while CLIENTS threads keep sending the
heaviest queries (each refused past the result budget, or just under it), and reports health
latency (median, p99, max), the heavy queries' statuses and sizes, and the server's peak RSS.
Usage: python bench/sql_load.py path/to/books.db [--clients 3] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
HEAVY = [
    "select randomblob(7900) from books",  # just under the result budget: answered in full
    "select randomblob(9000) from books",  # just over: refused with a 400
    "select " + ", ".join(["description"] * 20) + " from books",
    "select * from books a join books b limit 1000",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(url: str) -> tuple[int, int]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, len(response.read())
    except urllib.error.HTTPError as error:
        return error.code, len(error.read())


def health_latencies(url: str, seconds: float) -> list[float]:
    samples, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        get(url + "api/v1/health")
        samples.append(time.perf_counter() - started)
        time.sleep(0.05)
    return samples


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("books_db", type=Path)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sql-load-"))
    shutil.copyfile(args.books_db, work / "books.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKS_")}
    command = [sys.executable, "-m", "books_scraper.serve", "--port", str(port),
               "--books-db", str(work / "books.db"), "--operations-db", str(work / "operations.db")]
    server = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                get(url + "-/versions.json")
                break
            except OSError:
                time.sleep(0.1)
        idle = health_latencies(url, args.seconds / 2)
        rss_idle = peak_rss_mb(server.pid)
        stop, outcomes = threading.Event(), Counter()

        def client(index: int) -> None:
            while not stop.is_set():
                sql = HEAVY[index % len(HEAVY)]
                status, size = get(url + "books.json?" + urllib.parse.urlencode({"sql": sql}))
                outcomes[(sql[:45], status, size // 1_000_000)] += 1
                index += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for thread in threads:
            thread.start()
        loaded = health_latencies(url, args.seconds)
        stop.set()
        for thread in threads:
            thread.join()
        report = {
            "health_idle": summary(idle),
            "health_under_load": summary(loaded),
            "p50_ratio": round(statistics.median(loaded) / statistics.median(idle), 2),
            "rss_mb": {"idle_peak": round(rss_idle), "peak": round(peak_rss_mb(server.pid))},
            "heavy_queries": [
                {"sql": sql, "status": status, "mb": mb, "count": count}
                for (sql, status, mb), count in sorted(outcomes.items())
            ],
        }
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
