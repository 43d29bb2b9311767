"""Load shedding: a web process answers at most ``max_in_flight`` HTTP requests at once.

One more gets a fast 503 with ``Retry-After`` instead of waiting in a queue that grows without
bound (under overload, queued requests were answered long after their clients had given up). The
refusal happens before Django sees the request, so a refused POST changed nothing. The health
check is never refused (a load balancer must not take a busy process for a dead one) and
WebSockets are not counted (a socket is open for hours, not a request in progress).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from django.template.loader import get_template

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]

RETRY_AFTER_SECONDS = 1
BUSY = "the server is busy; retry in a moment"


class LoadShedding:
    """ASGI middleware bounding the HTTP requests in progress in this process."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int, exempt: Iterable[str] = ()) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.app = app
        self.max_in_flight = max_in_flight
        self.exempt = frozenset(exempt)
        self.in_flight = 0
        self.refused = 0
        self._page: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.refused += 1
            await self._refuse(scope, send)
            return
        # One event loop per process: the count needs no lock.
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if scope["path"].startswith("/api/"):
            body, content_type = json.dumps({"detail": BUSY}).encode(), b"application/json"
        else:
            body, content_type = self.page(), b"text/html; charset=utf-8"
        headers = [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def page(self) -> bytes:
        if self._page is None:  # rendered once: a busy process must not spend time on its refusals
            self._page = get_template("503.html").render().encode()
        return self._page
