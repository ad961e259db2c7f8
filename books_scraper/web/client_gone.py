"""Datasette's CSV export stops when its client goes (a plain ASGI middleware, no Datasette import).

Datasette 0.65 streams `/<db>/<table>.csv?_stream=on` page by page and never looks at `receive`,
and uvicorn's `send` is silently a no-op once the client has gone: a dropped export of a million
books kept a core busy until its last row, and held a stopping worker for its whole grace period.
Here a watcher waits on `receive` for `http.disconnect` (a GET has no body for the view to read),
and from then on `send` raises ClientGone, which ends the view's stream; the middleware ends there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


class ClientGone(BaseException):
    """The client of a streamed answer closed its connection. A BaseException, like the cancellation
    it stands for, so that the view's own `except Exception` (which would print it and try to write
    an error into the closed stream) lets it through to this middleware."""


def watched(scope: dict) -> bool:
    return scope["type"] == "http" and scope["method"] == "GET" and scope["path"].endswith(".csv")


def stop_when_client_goes(app: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    async def asgi(scope: dict, receive: Any, send: Callable[[dict], Awaitable[None]]) -> None:
        if not watched(scope):
            return await app(scope, receive, send)
        gone = asyncio.Event()
        first = await receive()  # the request (a GET: no body); the view is handed it as it asks

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def replay() -> dict:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send_while_connected(message: dict) -> None:
            if gone.is_set():
                raise ClientGone
            await send(message)

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await app(scope, replay, send_while_connected)
        except ClientGone:
            logger.info("%s: the client went away; the CSV stream stopped", scope["path"])
        finally:
            watcher.cancel()

    return asgi
