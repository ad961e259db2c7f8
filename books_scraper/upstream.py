"""Workarounds that reach into a dependency's private names: each one here, each with a test
(tests/test_upstream.py) that fails loudly when the upstream code it relies on changes.
"""

from __future__ import annotations

import datasette.handle_exception


def no_rich_tracebacks() -> None:
    """Datasette 0.65's default exception hook prints every exception, a 404 or 400 included, with
    rich and `show_locals=True` when rich is importable (Schemathesis brings it into the test
    environment). The locals hold the request's headers, so a Bearer token would reach the log.
    Errors the project logs itself keep their tracebacks, without the locals."""
    datasette.handle_exception.rich = None
