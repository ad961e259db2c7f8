"""Datasette's own pages answer a malformed request with a 4xx, never a 500.

Checked up front (books_scraper.datasette_errors), before Datasette runs anything: a method the view
does not take is a 405 with Allow, a bad parameter a 400, a row named by the wrong number of keys a
404; each as Datasette's own error page, or its JSON error for .json URLs. The one failure found
only afterwards: a query stopped by its time limit while building a CSV is a 400, as in JSON.
"""

from datasette import hookimpl
from datasette.utils.asgi import Request

from books_scraper.datasette_errors import malformed
from books_scraper.datasette_internals import QueryInterrupted, error_page, resolve

INTERRUPTED = "SQL query took too long; ask for less, or add _timelimit= up to sql_time_limit_ms"


@hookimpl(tryfirst=True)  # innermost: other wrappers (headers...) see these answers too
def asgi_wrapper(datasette):
    def wrap(app):
        async def checked(scope, receive, send):
            route = resolve(datasette, scope) if scope["type"] == "http" else None
            if route is None:
                return await app(scope, receive, send)
            body = BufferedBody(receive)
            request = Request(scope, receive)
            problem = await malformed(datasette, request, route, body.read)
            if problem is None:
                return await app(scope, body.receiver(), send)
            response = await error_page(datasette, request, problem.status, problem.message, problem.title)
            if problem.allow:
                response.headers["Allow"] = ", ".join(problem.allow)
            await response.asgi_send(send)

        return checked

    return wrap


@hookimpl
def handle_exception(datasette, request, exception):
    if isinstance(exception, QueryInterrupted) and request.url_vars.get("format") == "csv":
        # The JSON and HTML views answer this 400 themselves; the CSV renderer lets it through.
        return error_page(datasette, request, 400, INTERRUPTED, "SQL Interrupted")
    return None


class BufferedBody:
    """The request body, read only when a check asks for it, then replayed to Datasette."""

    def __init__(self, receive) -> None:
        self.receive, self.body = receive, None

    async def read(self) -> bytes:
        if self.body is None:
            self.body = await read_body(self.receive)
        return self.body

    def receiver(self):
        return self.receive if self.body is None else replay(self.body)


async def read_body(receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
