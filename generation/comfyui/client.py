"""Async client for one ComfyUI server (REST + WebSocket). Django-free.

async with ComfyClient("http://gpu-1:8188") as comfy:
    async with comfy.events() as stream:              # open before submitting
        accepted = await comfy.submit(graph)
        async for event in comfy.follow(accepted.prompt_id, stream=stream):
            ...
    entry = await comfy.history(accepted.prompt_id)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from generation.comfyui.errors import (
    ComfyNotFound,
    ComfyPromptLost,
    ComfyProtocolError,
    ComfyRejected,
)
from generation.comfyui.events import Event
from generation.comfyui.follow import follow as _follow
from generation.comfyui.http import Http, decode_json
from generation.comfyui.types import (
    HistoryEntry,
    PromptAccepted,
    PromptStatus,
    QueueState,
    ServerFeatures,
    SystemStats,
    UploadedImage,
)
from generation.comfyui.ws import EventStream

DEFAULT_VIEW_LIMIT = 512 * 1024 * 1024


class ComfyClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 10.0,
        client_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.client_id = client_id or uuid.uuid4().hex
        self.ws_url = "ws" + self.base_url.removeprefix("http") + "/ws"
        self._http = Http(self.base_url, timeout, transport)
        self._submitted: set[str] = set()

    async def __aenter__(self) -> ComfyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.close()

    # --- server

    async def system_stats(self) -> SystemStats:
        return SystemStats.from_json(await self._http.get_json("/system_stats"))

    async def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        path = "/object_info" if node_class is None else f"/object_info/{node_class}"
        data = await self._http.get_json(path)
        if not isinstance(data, dict):
            raise ComfyProtocolError("object_info is not an object")
        return data

    async def features(self) -> ServerFeatures:
        """What this server supports beyond ComfyUI 0.3.64's protocol (probed, never required)."""
        data = await self._http.get_json("/features")
        if not isinstance(data, dict):
            raise ComfyProtocolError("/features is not an object")
        jobs = await self._http.request("GET", "/api/jobs")
        return ServerFeatures(
            supports_preview_metadata=bool(data.get("supports_preview_metadata", False)),
            max_upload_size=data.get("max_upload_size"),
            jobs_api=jobs.status_code == 200 and jobs.headers.get("content-type", "").startswith("application/json"),
        )

    async def free(self, unload_models: bool = False, free_memory: bool = False) -> None:
        await self._http.post_ok("/free", {"unload_models": unload_models, "free_memory": free_memory})

    # --- queue

    async def queue(self) -> QueueState:
        return QueueState.from_json(await self._http.get_json("/queue"))

    async def delete_from_queue(self, prompt_ids: list[str]) -> None:
        """Drop pending prompts (a running one is not affected: interrupt it instead)."""
        await self._http.post_ok("/queue", {"delete": list(prompt_ids)})

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt; with prompt_id, only if that one is running."""
        await self._http.post_ok("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    async def submit(
        self,
        graph: dict[str, Any],
        *,
        prompt_id: str | None = None,
        extra_data: dict[str, Any] | None = None,
        front: bool = False,
    ) -> PromptAccepted:
        """Queue an API-format graph. Raises ComfyRejected with the server's node_errors."""
        payload: dict[str, Any] = {"prompt": graph, "client_id": self.client_id}
        if prompt_id is not None:
            payload["prompt_id"] = prompt_id
        if extra_data:
            payload["extra_data"] = extra_data
        if front:
            payload["front"] = True
        response = await self._http.request("POST", "/prompt", json=payload)
        if response.status_code == 400:
            body = decode_json(response, "POST /prompt")
            if not isinstance(body, dict):
                raise ComfyRejected(400, text=response.text)
            raise ComfyRejected(400, body.get("error"), body.get("node_errors"))
        if response.status_code != 200:
            raise ComfyRejected(response.status_code, text=response.text)
        body = decode_json(response, "POST /prompt")
        if not isinstance(body, dict) or "prompt_id" not in body:
            raise ComfyProtocolError(f"POST /prompt answered {body!r}")
        accepted = PromptAccepted(
            prompt_id=str(body["prompt_id"]),
            number=body.get("number", 0),
            node_errors=body.get("node_errors") or {},
            prompt_id_honored=None if prompt_id is None else str(body["prompt_id"]) == prompt_id,
        )
        self._submitted.add(accepted.prompt_id)
        return accepted

    # --- results

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt's entry; None while it is queued or running, and for unknown ids."""
        data = await self._http.get_json(f"/history/{prompt_id}")
        if not isinstance(data, dict):
            raise ComfyProtocolError("history is not an object")
        if prompt_id not in data:
            return None
        return HistoryEntry.from_json(prompt_id, data[prompt_id])

    async def prompt_status(self, prompt_id: str, *, expect_known: bool | None = None) -> PromptStatus:
        """pending | running | done | error | interrupted | unknown, from /queue then /history.

        History is {} both for unknown and unfinished prompts, so the queue is asked first (a
        prompt leaves the queue only once its history entry exists). A prompt this client
        submitted (or any, with expect_known=True) that is in neither raises ComfyPromptLost.
        """
        queue = await self.queue()
        if prompt_id in queue.running:
            return PromptStatus.RUNNING
        if prompt_id in queue.pending:
            return PromptStatus.PENDING
        entry = await self.history(prompt_id)
        if entry is not None:
            return entry.status
        if expect_known if expect_known is not None else prompt_id in self._submitted:
            raise ComfyPromptLost(prompt_id)
        return PromptStatus.UNKNOWN

    # --- files

    async def upload_image(
        self, data: bytes, filename: str, subfolder: str = "", overwrite: bool = False, type: str = "input"
    ) -> UploadedImage:
        files = {"image": (filename, data, "application/octet-stream")}
        form = {"subfolder": subfolder, "type": type, "overwrite": "true" if overwrite else "false"}
        response = await self._http.request("POST", "/upload/image", files=files, data=form)
        if response.status_code != 200:
            raise ComfyRejected(response.status_code, text=response.text or f"upload of {filename!r} refused")
        body = decode_json(response, "POST /upload/image")
        if not isinstance(body, dict) or "name" not in body:
            raise ComfyProtocolError(f"POST /upload/image answered {body!r}")
        return UploadedImage(str(body["name"]), str(body.get("subfolder", "")), str(body.get("type", type)))

    async def view(
        self, filename: str, subfolder: str = "", type: str = "output", *, max_bytes: int = DEFAULT_VIEW_LIMIT
    ) -> bytes:
        """Download one output file, refusing more than max_bytes."""
        params = {"filename": filename, "subfolder": subfolder, "type": type}
        async with self._http.stream("GET", "/view", params=params) as response:
            if response.status_code == 404:
                raise ComfyNotFound(f"{type}/{subfolder}/{filename} does not exist on {self.base_url}")
            if response.status_code != 200:
                raise ComfyRejected(response.status_code, text=f"/view refused {filename!r}")
            declared = int(response.headers.get("content-length", "0") or 0)
            if declared > max_bytes:
                raise ComfyProtocolError(f"{filename} is {declared} bytes, over the {max_bytes} byte limit")
            chunks, size = [], 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise ComfyProtocolError(f"{filename} exceeds the {max_bytes} byte limit")
                chunks.append(chunk)
        return b"".join(chunks)

    # --- WebSocket

    def events(self, **options: Any) -> EventStream:
        """A stream of this client_id's events (see EventStream for the reconnect options)."""
        return EventStream(self.ws_url, self.client_id, open_timeout=self.timeout, **options)

    def follow(
        self,
        prompt_id: str,
        *,
        stream: EventStream | None = None,
        stall_timeout: float = 15.0,
        timeout: float | None = None,
        on_gap: Callable[[], None] | None = None,
    ) -> AsyncIterator[Event]:
        return _follow(self, prompt_id, stream=stream, stall_timeout=stall_timeout, timeout=timeout, on_gap=on_gap)
