"""The ComfyUI WebSocket as a stream of typed events, reconnecting with bounded backoff."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from generation.comfyui.errors import ComfyUnreachable
from generation.comfyui.events import Disconnected, Event, parse_binary, parse_text
from generation.comfyui.http import redact

_STATUS = '{"type": "status"'


async def next_event(queue: asyncio.Queue[Event | BaseException], timeout: float | None) -> Event:
    """The next event of a stream's queue; TimeoutError if none arrives within ``timeout``
    seconds. A failure put in the queue stays there, so it keeps failing for later callers too."""
    if queue.empty():
        item = await asyncio.wait_for(queue.get(), timeout)
    else:  # events come in bursts: no task and timer per event when one is waiting already
        item = queue.get_nowait()
    if isinstance(item, BaseException):
        queue.put_nowait(item)
        raise item
    return item


class EventStream:
    """Events for one clientId, read by a background task so that waiting with a timeout is safe.

    Use as ``async with client.events() as stream: async for event in stream: ...`` or call
    ``await stream.get(timeout)``. When the socket drops, a ``Disconnected`` event is queued and
    the stream reconnects (exponential backoff up to ``max_backoff`` seconds); after
    ``reconnect_timeout`` seconds without a connection it raises ComfyUnreachable.
    """

    def __init__(
        self,
        ws_url: str,
        client_id: str,
        *,
        open_timeout: float = 10.0,
        reconnect_timeout: float = 60.0,
        max_backoff: float = 5.0,
        preview_metadata: bool = True,
        ignore: Iterable[str] = (),
    ) -> None:
        self.url = f"{ws_url}?clientId={client_id}"
        self.client_id = client_id
        self.open_timeout = open_timeout
        self.reconnect_timeout = reconnect_timeout
        self.max_backoff = max_backoff
        self.preview_metadata = preview_metadata
        # Message types the reader has no use for are dropped before they are decoded. ComfyUI
        # writes every message as json.dumps({"type": ..., "data": ...}), so the type is at a
        # fixed place; a server that writes them otherwise just has them decoded as usual.
        # Ignoring "status" drops the queue broadcasts only: the status addressed to this socket
        # when it connects (it carries the socket's "sid") still comes through, as followers
        # learn from it that a reconnect is complete.
        self._ignored = tuple(f'{{"type": "{kind}"' for kind in ignore)
        self.reconnects = 0
        self._queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None

    async def __aenter__(self) -> EventStream:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"comfyui-ws-{self.client_id}")
        waiter = asyncio.create_task(self._connected.wait())
        done, _ = await asyncio.wait({waiter, self._task}, timeout=self.open_timeout, return_when="FIRST_COMPLETED")
        if waiter not in done:
            waiter.cancel()
            await self.close()
            raise ComfyUnreachable(f"could not open the ComfyUI WebSocket {redact(self.url)} in {self.open_timeout} s")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def get(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError if none arrives within timeout seconds."""
        return await next_event(self._queue, timeout)

    async def _run(self) -> None:
        attempt = 0
        down_since: float | None = None
        while True:
            reason = "closed by the server"
            try:
                # No permessage-deflate: ComfyUI's messages are small JSON and JPEG previews, and
                # compressing each one cost both ends CPU for nothing on a LAN.
                async with connect(self.url, open_timeout=self.open_timeout, max_size=None, compression=None) as ws:
                    self._ws = ws
                    if self.preview_metadata:
                        await ws.send(
                            json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                        )
                    if self._connected.is_set():
                        self.reconnects += 1
                    self._connected.set()
                    attempt, down_since = 0, None
                    ignored = self._ignored
                    async for raw in ws:
                        if ignored and isinstance(raw, str) and self._drop(raw, ignored):
                            continue
                        self._queue.put_nowait(self._parse(raw))
            except (OSError, WebSocketException, TimeoutError) as exc:
                reason = str(exc) or type(exc).__name__
            if self._ws is not None:
                self._ws = None
                self._queue.put_nowait(Disconnected(reason))
            now = time.monotonic()
            down_since = down_since or now
            if now - down_since > self.reconnect_timeout:
                self._queue.put_nowait(
                    ComfyUnreachable(
                        f"ComfyUI WebSocket {redact(self.url)} lost for over {self.reconnect_timeout} s: {reason}"
                    )
                )
                return
            await asyncio.sleep(min(self.max_backoff, 0.05 * 2**attempt))
            attempt += 1

    @staticmethod
    def _drop(raw: str, ignored: tuple[str, ...]) -> bool:
        return raw.startswith(ignored) and not (raw.startswith(_STATUS) and '"sid"' in raw)

    @staticmethod
    def _parse(raw: Any) -> Event:
        return parse_binary(bytes(raw)) if isinstance(raw, bytes | bytearray) else parse_text(str(raw))
