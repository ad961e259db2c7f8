"""The log format both halves share: plain text for a person at a terminal (the default), or one JSON
object per line for a log collector (`BOOKS_LOG_FORMAT=json`, python-json-logger).

The server's logging is set up by its startup hook (books_scraper/web/observability.py), the crawler's
by `scrapy crawl` (books_scraper/commands/crawl.py): both through `console_handler` below.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Mapping

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FORMAT_VARIABLE = "BOOKS_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
# The fields every JSON line starts with; a record's extras (request_id, status ...) follow them.
JSON_FIELDS = ("levelname", "name", "message")
JSON_RENAMES = {"levelname": "level", "name": "logger"}
# Record attributes never written out: logging's own, and uvicorn's copy of a message with colour codes.
JSON_OMITTED = (*RESERVED_ATTRS, "color_message")


def log_format(value: str | None) -> str:
    """`json` or `text` (anything else, unset included, is text: a typo must not silence the logs)."""
    return "json" if (value or "").strip().lower() == "json" else "text"


def formatter(kind: str, static_fields: Mapping[str, object] | None = None) -> logging.Formatter:
    """JSON: time (ISO 8601, UTC), level, logger, message, then the record's extras and static fields.
    Text: the same facts on one line, the static fields (a job id) before the message."""
    if kind == "json":
        return JsonFormatter(
            list(JSON_FIELDS), rename_fields=JSON_RENAMES, timestamp="time", reserved_attrs=list(JSON_OMITTED),
            static_fields=dict(static_fields or {}),
        )
    prefix = "".join(f"{name}={value} " for name, value in (static_fields or {}).items())
    return logging.Formatter(TEXT_FORMAT.replace("%(message)s", prefix.replace("%", "%%") + "%(message)s"))


class StderrLines(io.TextIOBase):
    """sys.stderr while the logs are JSON: what a library writes there itself (Datasette's
    `ERROR: conn=..., sql = ...` for a failed query, its write thread's errors, Python's warnings)
    becomes a log record per line, so every line of the log is JSON."""

    def __init__(self, original) -> None:
        self.original = original
        self.pending = ""
        self.logger = logging.getLogger("stderr")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                self.logger.warning(line)
        return len(text)


class StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (as logging's last-resort handler does), or under
    StderrLines to the stream it replaced."""

    @property
    def stream(self):
        return sys.stderr.original if isinstance(sys.stderr, StderrLines) else sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property always wins
        pass


def console_handler(kind: str, level: str | int, static_fields: Mapping[str, object] | None = None) -> logging.Handler:
    handler = StderrHandler()
    handler.setFormatter(formatter(kind, static_fields))
    handler.setLevel(level)
    return handler


def install_root_handler(handler: logging.Handler, level: str | int) -> None:
    """`handler` becomes the process's one console handler: a previous one of ours, or a plain
    StreamHandler (logging.basicConfig's), is replaced; others (pytest's capture, files) stay."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, StderrHandler) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def configure_process_logging(environ: Mapping[str, str], level: str | None = None) -> logging.Handler:
    """A process's console logging from its environment: BOOKS_LOG_FORMAT and BOOKS_LOG_LEVEL (INFO)."""
    level = (level or environ.get("BOOKS_LOG_LEVEL") or "INFO").upper()
    kind = log_format(environ.get(FORMAT_VARIABLE))
    handler = console_handler(kind, level)
    install_root_handler(handler, level)
    if kind == "json" and not isinstance(sys.stderr, StderrLines):
        sys.stderr = StderrLines(sys.stderr)
    return handler


# Loggers whose errors are expected network failures (robots.txt unreachable: refused, no such host,
# timed out), logged by Scrapy with a traceback: one line each at ERROR, the traceback at DEBUG only.
NETWORK_FAILURE_LOGGERS = ("scrapy.downloadermiddlewares.robotstxt",)


class TracebackAtDebugOnly(logging.Filter):
    def __init__(self, show_tracebacks: bool) -> None:
        super().__init__()
        self.show_tracebacks = show_tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not self.show_tracebacks:
            record.exc_info, record.exc_text = None, None
        return True


def configure_crawl_logging(settings) -> None:
    """For `scrapy crawl`, before Scrapy installs its root handler: with BOOKS_LOG_FORMAT=json (setting
    or environment) every line is JSON, and a job's crawl (BOOKS_JOB_ID) carries `job_id` in every
    line in either format. Plain text crawls outside a job keep Scrapy's own handler."""
    debug = str(settings.get("LOG_LEVEL")).upper() == "DEBUG"
    for name in NETWORK_FAILURE_LOGGERS:
        logging.getLogger(name).addFilter(TracebackAtDebugOnly(show_tracebacks=debug))
    kind = log_format(settings.get(FORMAT_VARIABLE))
    job_id = settings.get("BOOKS_JOB_ID")
    static_fields = {"job_id": int(job_id) if str(job_id).isdigit() else job_id} if job_id not in (None, "", 0, "0") else {}
    if kind == "text" and not static_fields:
        return
    level = settings.get("LOG_LEVEL")
    if not settings.getbool("LOG_ENABLED"):
        level = logging.CRITICAL + 1
    settings.set("LOG_INSTALL_ROOT_HANDLER", False, priority="cmdline")
    install_root_handler(console_handler(kind, level, static_fields), logging.NOTSET)
