"""A site directory served on 127.0.0.1 for the crawl benchmarks, by a server that stays out of the way.

nginx (Debian's /usr/sbin/nginx) runs as an unprivileged process with one worker, no access log and
a config generated in a temporary directory, and is stopped at the end. Where nginx is absent,
Python's `http.server` serves instead: it shares the cores with the crawl and is slow enough to hold
the bare fetch back more than the full crawl, so the ratios it gives look better than they are.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")
NOBODY = 65534  # the unprivileged user nginx runs as when the benchmark runs as root

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    types {{ text/html html; text/plain txt; image/jpeg jpg; }}
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        index index.html;
    }}
}}
"""


@dataclass
class Served:
    url: str  # the site's base URL, ending in /
    server: str  # "nginx 1.22.1" or "python http.server"
    note: str  # what the reader must know about the figures, or ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_path() -> str | None:
    for candidate in NGINX_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def wait_until_serving(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # the server answers (a site without index.html answers 404)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"the site did not come up at {url}")
            time.sleep(0.1)


@contextmanager
def running(command: list[str], url: str, preexec_fn: Callable[[], None] | None = None) -> Iterator[None]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=preexec_fn
    )
    try:
        wait_until_serving(url, process)
        yield
    finally:
        process.terminate()  # nginx: fast shutdown; its worker exits with it
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def drop_privileges() -> None:
    """In the child, before exec: run nginx as nobody when the benchmark runs as root."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


@contextmanager
def serve_nginx(nginx: str, root: Path, port: int) -> Iterator[Served]:
    with tempfile.TemporaryDirectory(prefix="crawl-bench-nginx-") as work:
        conf = Path(work) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(work=work, port=port, root=root.resolve()))
        if os.geteuid() == 0:
            os.chown(work, NOBODY, NOBODY)  # its pid file and error log
        version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        url = f"http://127.0.0.1:{port}/"
        command = [nginx, "-p", work, "-e", f"{work}/error.log", "-c", str(conf)]
        with running(command, url, preexec_fn=drop_privileges):
            yield Served(url, version.replace("nginx version: ", "").replace("/", " "), "")


PYTHON_NOTE = (
    "served by Python's http.server, which shares the cores with the crawl and holds the bare fetch "
    "back more than the full crawl (the ratios look better than they are)"
)


@contextmanager
def serve_python(root: Path, port: int, note: str) -> Iterator[Served]:
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), str(port)]
    with running(command, url):
        yield Served(url, "python http.server", note)


def closed_to_nobody(root: Path) -> Path | None:
    """The first directory on the way to `root` that nginx, run as nobody, could not enter."""
    if os.geteuid() != 0:
        return None  # nginx runs as this user
    for directory in (root.resolve(), *root.resolve().parents):
        if not directory.stat().st_mode & 0o001:
            return directory
    return None


@contextmanager
def serve_site(root: Path, server: str = "nginx", port: int = 0) -> Iterator[Served]:
    """`root` served on 127.0.0.1 by nginx (falling back to http.server with a note) or by http.server."""
    port = port or free_port()
    nginx = nginx_path() if server == "nginx" else None
    closed = closed_to_nobody(root) if nginx else None
    if nginx and not closed:
        with serve_nginx(nginx, root, port) as served:
            yield served
        return
    if server == "python":
        note = f"--server python: {PYTHON_NOTE}"
    elif closed:
        note = f"nginx, run as nobody, could not enter {closed}: {PYTHON_NOTE}"
    else:
        note = f"nginx was not found: {PYTHON_NOTE}"
    print(f"NOTE: {note}", file=sys.stderr)
    with serve_python(root, port, note) as served:
        yield served
