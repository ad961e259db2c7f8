"""Every Datasette 0.65 private name the project relies on, in one place.

tests/test_datasette_internals.py and test_datasette_fuzz.py::test_datasette_internals_are_as_the_checks_expect
fail when an upgrade changes any of them: then re-run the fuzz test and revisit
books_scraper.web.datasette_errors, or drop no_rich_tracebacks() if Datasette stops printing locals,
or books_scraper.web.plugin_metadata if Datasette stops copying its metadata per permission check.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, field

import datasette.handle_exception

from datasette.database import QueryInterrupted
from datasette.handle_exception import handle_exception as default_handle_exception
from datasette.utils import resolve_routes, tilde_decode, urlsafe_components
from datasette.utils.asgi import Request, Response
from datasette.views.base import BaseView, DatasetteError
from datasette.views.database import DatabaseView
from datasette.views.row import RowView
from datasette.views.special import AllowDebugView, AuthTokenView, MessagesDebugView
from datasette.views.table import TableView

__all__ = [
    "AllowDebugView", "AuthTokenView", "DatabaseView", "MessagesDebugView", "QueryInterrupted",
    "Route", "RowView", "TableView", "allowed_methods", "error_page", "matched_route", "no_rich_tracebacks",
    "pop_local_metadata", "resolve", "urlsafe_components",
]

_ROUTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Datasette -> its compiled routes
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@dataclass(frozen=True)
class Route:
    """The Datasette view class a path reaches, and its URL variables (names tilde-decoded)."""

    view: type
    url_vars: dict[str, str] = field(default_factory=dict)

    def var(self, name: str) -> str | None:
        value = self.url_vars.get(name)
        return None if value is None else tilde_decode(value)


def resolve(datasette, scope: dict) -> Route | None:
    """The Datasette view class that will answer this request, or None for plugin and static routes.

    Mirrors DatasetteRouter: the raw path decides (so `%2F` stays in a name), plugin routes first."""
    match, view = _match(datasette, scope)
    view_class = getattr(view, "view_class", None)
    if match is None or view_class is None or not issubclass(view_class, BaseView):
        return None
    return Route(view_class, {k: v for k, v in match.groupdict().items() if v is not None})


def matched_route(datasette, scope: dict) -> re.Match | None:
    """The match of the route, Datasette's or a plugin's, that answers this path; None when none does
    (the metrics' route label is made from it: books_scraper/web/observability.py)."""
    return _match(datasette, scope)[0]


def _match(datasette, scope: dict) -> tuple[re.Match | None, object]:
    routes = _ROUTES.get(datasette)
    if routes is None:
        routes = _ROUTES[datasette] = datasette._routes()
    raw_path = scope.get("raw_path")
    try:
        path = raw_path.decode("ascii") if raw_path else scope["path"]
    except UnicodeDecodeError:
        return None, None
    return resolve_routes(routes, path.partition("?")[0])


def allowed_methods(view: type) -> tuple[str, ...]:
    """The methods a view class really answers: BaseView stubs the others with a bare-text 405 and
    fails with a TypeError (500) on any method it has no attribute for (TRACE, PROPFIND...)."""
    allowed = []
    for method in METHODS:
        handler = getattr(view, method.lower(), None)
        stub = getattr(BaseView, method.lower(), None)
        if method == "HEAD":  # BaseView.head runs get() and drops the body
            if getattr(view, "get", None) is not None:
                allowed.append(method)
        elif handler is not None and handler is not stub:
            allowed.append(method)
    return tuple(allowed)


async def error_page(datasette, request: Request, status: int, message: str, title: str) -> Response:
    """Datasette's own error answer: its error page, or its JSON error envelope for .json URLs."""
    try:  # the default handler prints the exception being handled
        raise DatasetteError(message, title=title, status=status)
    except DatasetteError as error:
        return await default_handle_exception(datasette=datasette, request=request, exception=error)()


def no_rich_tracebacks() -> None:
    """Datasette 0.65's default exception hook prints every exception, a 404 or 400 included, with
    rich and `show_locals=True` when rich is importable (Schemathesis brings it into the test
    environment). The locals hold the request's headers, so a Bearer token would reach the log."""
    datasette.handle_exception.rich = None


def pop_local_metadata(datasette, key: str) -> object | None:
    """Takes `key` out of the metadata Datasette was started with and returns it. Datasette 0.65.5
    deep-copies that whole dict in every view-table permission check (_table_permission_allows, twice
    per table page or JSON); what is taken out is then served by a get_metadata hook instead
    (books_scraper/web/plugin_metadata.py). The dict Datasette was handed is left as it was: a
    caller may hand the same one to another Datasette."""
    local = datasette._metadata_local
    datasette._metadata_local = {name: value for name, value in local.items() if name != key}
    return local.get(key)
