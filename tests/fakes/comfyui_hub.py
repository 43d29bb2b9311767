"""WebSocket fan-out of the fake ComfyUI: who receives what, and the stall/drop test hooks."""

from __future__ import annotations

import json
import struct
from collections import defaultdict
from typing import Any

from aiohttp import web

PREVIEW_IMAGE = 1
PREVIEW_IMAGE_WITH_METADATA = 4


class Hub:
    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.flags: dict[str, dict] = {}
        self.stalled = False
        self.drop_while_stalled = False
        self._backlog: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        self.sent_counts: dict[str, int] = defaultdict(int)

    def supports_metadata(self, sid: str | None) -> bool:
        return sid is not None and bool(self.flags.get(sid, {}).get("supports_preview_metadata"))

    async def send_json(self, event: str, data: Any, sid: str | None = None) -> None:
        await self._send("json", {"type": event, "data": data}, sid)
        self.sent_counts[event] += 1

    async def send_preview(self, png: bytes, sid: str | None, metadata: dict | None) -> None:
        """A preview frame: type 4 with metadata for sockets that asked for it, else type 1."""
        if metadata is not None:
            meta = json.dumps({**metadata, "image_type": "image/png"}).encode()
            payload = struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + png
        else:
            payload = struct.pack(">II", PREVIEW_IMAGE, 2) + png
        await self._send("bytes", payload, sid)
        self.sent_counts["<binary>"] += 1

    async def _send(self, kind: str, payload: Any, sid: str | None) -> None:
        targets = list(self.sockets.items()) if sid is None else [(sid, self.sockets.get(sid))]
        for target_sid, ws in targets:
            if ws is None:
                continue
            if self.stalled:
                if not self.drop_while_stalled:
                    self._backlog[target_sid].append((kind, payload))
                continue
            await _deliver(ws, kind, payload)

    async def unstall(self) -> None:
        self.stalled = False
        backlog, self._backlog = self._backlog, defaultdict(list)
        for sid, items in backlog.items():
            ws = self.sockets.get(sid)
            if ws is None:
                continue
            for kind, payload in items:
                await _deliver(ws, kind, payload)

    async def close_all(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close()
        self.sockets.clear()
        self.flags.clear()
        self._backlog.clear()


async def _deliver(ws: web.WebSocketResponse, kind: str, payload: Any) -> None:
    # Like the real server, a failing socket is ignored rather than breaking the sender.
    try:
        if kind == "json":
            await ws.send_json(payload)
        else:
            await ws.send_bytes(payload)
    except (ConnectionError, RuntimeError):
        pass
