"""Live reload: serve each newly published books database without a restart, and without a failed request.

The supervisor binds the listening socket itself and runs the server as worker processes sharing it
(books_scraper/web/worker.py). It looks at the published file's identity (device, inode, size,
mtime) every second; a crawl publishes by os.replace, so a new identity is a new publication. Then
it pins that file under a name of its own (a hard link: later publications do not change what it
names), starts a worker on it, and once that worker accepts, sends the old one SIGTERM: it stops
accepting, finishes the requests it has begun and exits. Both accept on the one socket meanwhile, so
no connection is refused, and each request is answered wholly by one worker reading one file, so no
answer mixes two publications. A publication whose worker does not start is logged and not served;
the old one stays. A worker that dies unexpectedly is started again.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from books_scraper.web.served_metadata import PROJECT
from books_scraper.web.served_metadata import GRACEFUL_SECONDS

WATCH_SECONDS = 1.0  # how often the published file is looked at
TICK_SECONDS = 0.1  # how often workers are looked at
START_SECONDS = 60  # the longest a worker may take to accept
STOP_SECONDS = GRACEFUL_SECONDS + 3  # then a stopping worker is killed
RESTART_DELAYS = (0.5, 1, 2, 5, 10, 30)  # between restarts of a worker that keeps dying
BACKLOG = 2048  # as uvicorn's

logger = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on; OSError when the address is taken."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        listener.bind((host, port))
        listener.listen(BACKLOG)
    except OSError:
        listener.close()
        raise
    return listener


Identity = tuple[int, int, int, int]


def identity(path: Path) -> Identity | None:
    """What names one published version: a publication replaces the file, so the inode changes."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass
class Pin:
    """One published version, under a name no publication replaces."""

    identity: Identity
    path: Path  # <pins>/<inode>-<mtime>/books.db: Datasette names a database after its file

    def remove(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


class Pins:
    """The pinned versions of one supervisor, in a directory beside the published file."""

    PREFIX = ".books.db.served-"

    def __init__(self, published: Path) -> None:
        self.published = published
        remove_abandoned(published.parent, self.PREFIX)
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.PREFIX}{os.getpid()}-", dir=published.parent))

    def pin(self) -> Pin | None:
        """The file published now, linked first and identified by the link, so a publication between
        the two steps cannot pair one version's identity with another's data."""
        directory = Path(tempfile.mkdtemp(dir=self.root))
        path = directory / self.published.name
        try:
            try:
                os.link(self.published, path)
            except OSError as error:
                if error.errno == errno.ENOENT:
                    raise
                shutil.copyfile(self.published, path)  # a file system without hard links
        except FileNotFoundError:
            shutil.rmtree(directory, ignore_errors=True)
            return None
        return Pin(identity(path), path)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def remove_abandoned(directory: Path, prefix: str) -> None:
    """Pins left by a supervisor that was killed (its process id is gone)."""
    for path in directory.glob(f"{prefix}*"):
        try:
            os.kill(int(path.name[len(prefix):].split("-")[0]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError):
            pass  # not ours, or another user's live supervisor


def encode_assignment(books_db: Path, operations_db: Path, metadata: Path, environment: dict[str, str]) -> bytes:
    """The control message to a worker (its worker.receive_assignment reads it), less the two file
    descriptors sent beside it: the listening socket, then the ready pipe."""
    return json.dumps({"books_db": str(books_db), "operations_db": str(operations_db),
                       "metadata": str(metadata), "environment": environment}).encode()


@dataclass
class Spawned:
    """A worker process before its assignment: importing Datasette and the plugins, or waiting."""

    process: subprocess.Popen
    control: socket.socket

    def assign(self, listener: socket.socket, ready_pipe: int, books_db: Path, operations_db: Path,
               metadata: Path, environment: dict[str, str]) -> None:
        """Tell it what to serve. If it died before (it could not import), its ready pipe closes
        unwritten and the supervisor reports how it exited."""
        message = encode_assignment(books_db, operations_db, metadata, environment)
        try:
            socket.send_fds(self.control, [message], [listener.fileno(), ready_pipe])
        except OSError:
            pass
        finally:
            self.control.close()


def spawn_worker(**popen: object) -> Spawned:
    """Start a worker process (books_scraper/web/worker.py) with this process's environment; it
    waits for its assignment once it has imported what it runs."""
    control, theirs = socket.socketpair()
    command = [sys.executable, "-m", "books_scraper.web.worker", "--control-fd", str(theirs.fileno()),
               "--parent", str(os.getpid())]
    try:
        process = subprocess.Popen(command, cwd=PROJECT, pass_fds=(theirs.fileno(),), **popen)
    finally:
        theirs.close()
    return Spawned(process, control)


@dataclass
class Worker:
    process: subprocess.Popen
    pin: Pin
    ready_pipe: int
    started: float = field(default_factory=time.monotonic)
    facts: dict | None = None  # what it reported when ready
    buffer: bytes = b""
    stopping_since: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll_ready(self) -> bool | None:
        """True once it reported ready, False if it cannot any more (its pipe closed), else None."""
        if self.facts is not None:
            return True
        try:
            chunk = os.read(self.ready_pipe, 4096)
        except BlockingIOError:
            return None
        self.buffer += chunk
        if b"\n" in self.buffer:
            self.facts = json.loads(self.buffer.split(b"\n")[0])
            self.close_pipe()
            return True
        if not chunk:
            self.close_pipe()
            return False
        return None

    def close_pipe(self) -> None:
        if self.ready_pipe >= 0:
            os.close(self.ready_pipe)
            self.ready_pipe = -1

    def stop(self) -> None:
        if self.stopping_since is None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.stopping_since = self.stopping_since or time.monotonic()


def exit_status(process: subprocess.Popen) -> int | None:
    """The status of a process that closed its ready pipe, once it has exited (it is exiting)."""
    try:
        return process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        return None


def describe(pin: Pin, facts: dict | None) -> str:
    """`books.db published at <time>, <n> books`, as the log says which version is served."""
    facts = facts or {}
    published = facts.get("published_at") or datetime.fromtimestamp(
        pin.identity[3] / 1e9, timezone.utc
    ).isoformat(timespec="seconds")
    text = f"{pin.path.name} published at {published}, {facts.get('books', '?')} books"
    if facts.get("run_id") is not None:
        text += f" (run {facts['run_id']})"
    return text


class Supervisor:
    def __init__(
        self, listener: socket.socket, books_db: Path, operations_db: Path, metadata: Path,
        spawned: Spawned | None = None,
    ) -> None:
        self.listener = listener
        self.books_db, self.operations_db, self.metadata = books_db, operations_db, metadata
        self.pins = Pins(books_db)
        self.spawned = spawned
        # Every worker signs cookies and CSRF tokens with the same secret; the crawl jobs a worker
        # starts publish to the real file, not to the worker's pinned link.
        self.environment = {
            "DATASETTE_SECRET": os.environ.get("DATASETTE_SECRET") or secrets.token_hex(32),
            "BOOKS_DB_PATH": str(books_db),
            "BOOKS_OPS_DB_PATH": str(operations_db),
        }
        self.serving: Worker | None = None
        self.starting: Worker | None = None
        self.stopping: list[Worker] = []
        self.refused: Identity | None = None  # a publication whose worker did not start
        self.served = False  # a worker has accepted once
        self.restarts = 0  # restarts since a worker last became ready
        self.restart_pin: Pin | None = None
        self.restart_at = 0.0
        self.next_watch = 0.0
        self.exit_requested = False

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; non-zero when the first worker never started."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.request_exit)
        try:
            pin = self.pins.pin()
            if pin is None:
                logger.error("no books database at %s: nothing to serve", self.books_db)
                return 1
            self.starting = self.start(pin)
            while not self.exit_requested:
                if not self.tick():
                    return 1
                pipes = [w.ready_pipe for w in (self.starting,) if w and w.ready_pipe >= 0]
                select.select(pipes, [], [], TICK_SECONDS)
            return 0
        finally:
            self.stop_all()
            self.pins.close()
            self.listener.close()

    def request_exit(self, signum: int, frame: object) -> None:
        self.exit_requested = True

    def tick(self) -> bool:
        """One look at every worker and, every WATCH_SECONDS, at the published file."""
        self.reap_stopping()
        if self.starting and not self.check_starting():
            return False
        if self.serving and self.serving.process.poll() is not None:
            crashed, self.serving = self.serving, None
            logger.error("worker %d exited unexpectedly (status %s)", crashed.pid, crashed.process.returncode)
            crashed.close_pipe()
            self.schedule_restart(crashed.pin)
        if self.restart_pin and self.starting is None and time.monotonic() >= self.restart_at:
            self.starting, self.restart_pin = self.start(self.restart_pin), None
        if time.monotonic() >= self.next_watch:
            self.next_watch = time.monotonic() + WATCH_SECONDS
            self.watch()
        return True

    def watch(self) -> None:
        """Start a worker for a new publication (one at a time; a later one is seen next time)."""
        if self.starting or self.serving is None:
            return
        now = identity(self.books_db)
        if now is None or now in (self.serving.pin.identity, self.refused):
            return
        pin = self.pins.pin()
        if pin is None or pin.identity == self.serving.pin.identity:
            if pin:
                pin.remove()
            return
        logger.info("new publication of %s: starting a worker for it", self.books_db)
        self.starting = self.start(pin)

    def check_starting(self) -> bool:
        """Promote the starting worker once it accepts; give up on it if it cannot. False when the
        very first worker failed (there is nothing to go on serving)."""
        worker = self.starting
        ready = worker.poll_ready()
        if ready and worker.process.poll() is None:
            self.promote(worker)
            return True
        timed_out = time.monotonic() - worker.started > START_SECONDS
        if ready is None and not timed_out:
            return True
        self.starting = None
        worker.stop()
        self.stopping.append(worker)
        reason = "did not answer in time" if timed_out else f"exited with status {exit_status(worker.process)}"
        if self.serving:
            self.refused = worker.pin.identity
            logger.error("not reloaded: the worker for the new %s %s; still serving %s",
                         self.books_db.name, reason, describe(self.serving.pin, self.serving.facts))
            return True
        if not self.served:
            logger.error("the server did not start: its worker %s", reason)
            return False
        logger.error("the worker for %s %s", describe(worker.pin, None), reason)
        self.schedule_restart(worker.pin)
        return True

    def promote(self, worker: Worker) -> None:
        self.starting = None
        old, self.serving = self.serving, worker
        self.refused = None
        what = f"{describe(worker.pin, worker.facts)} (worker {worker.pid}, ready in " \
               f"{time.monotonic() - worker.started:.1f} s)"
        if old is None:
            logger.info("%s: serving %s", "restarted" if self.served else "started", what)
            self.served, self.restarts = True, 0
            return
        logger.info("reloaded: serving %s", what)
        old.stop()
        self.stopping.append(old)

    def schedule_restart(self, pin: Pin) -> None:
        """Start a worker on the same version again, sooner the first times."""
        delay = RESTART_DELAYS[min(self.restarts, len(RESTART_DELAYS) - 1)]
        self.restarts += 1
        self.restart_pin, self.restart_at = pin, time.monotonic() + delay
        logger.error("starting another worker in %s s", delay)

    # -- workers ----------------------------------------------------------------------------------

    def start(self, pin: Pin) -> Worker:
        """A worker on that version: the one spawned at start-up the first time, else a new one."""
        spawned, self.spawned = self.spawned or spawn_worker(), None
        read, write = os.pipe()
        os.set_blocking(read, False)
        try:
            spawned.assign(self.listener, write, pin.path, self.operations_db, self.metadata, self.environment)
        finally:
            os.close(write)
        return Worker(spawned.process, pin, read)

    def reap_stopping(self) -> None:
        for worker in list(self.stopping):
            if worker.process.poll() is None:
                if time.monotonic() - worker.stopping_since > STOP_SECONDS:
                    logger.warning("worker %d did not stop in %d s: killed", worker.pid, STOP_SECONDS)
                    worker.process.kill()
                continue
            self.stopping.remove(worker)
            self.release(worker)

    def release(self, worker: Worker) -> None:
        """Close its pipe and drop its pin unless another worker serves the same version."""
        worker.close_pipe()
        pins = [w.pin for w in (self.serving, self.starting, *self.stopping) if w and w is not worker]
        if all(pin.path != worker.pin.path for pin in [*pins, self.restart_pin] if pin):
            worker.pin.remove()

    def stop_all(self) -> None:
        if self.spawned:  # never assigned
            self.spawned.control.close()
            self.spawned.process.terminate()
            self.spawned.process.wait()
            self.spawned = None
        workers = [w for w in (self.starting, self.serving, *self.stopping) if w]
        for worker in workers:
            worker.stop()
        deadline = time.monotonic() + STOP_SECONDS
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.close_pipe()
