"""The engine benchmark's direct client: a minimal ComfyUI client Tower is compared against, and ComfyUI's own
start and end times of prompts."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any


async def _fetch_outputs(comfy: Any, prompt_id: str) -> int:
    entry = await comfy.history(prompt_id)
    assert entry is not None, prompt_id
    for f in entry.outputs:
        await comfy.view(f.filename, f.subfolder, f.type)
    return len(entry.outputs)


async def _wait_end(stream: Any, prompt_ids: set[str], on_end: Any) -> None:
    """Call ``on_end`` as each prompt ends: at its ``executing`` end marker after its success.

    A real ComfyUI sends ``execution_success`` before it writes the prompt's history and the end
    marker after, so a client that asks ``/history`` on the success can find nothing (it did, on
    ComfyUI 0.3.64 on this machine); Tower waits for the marker too (``comfy.follow``)."""
    from generation.comfyui.events import Executing, ExecutionError, ExecutionSuccess

    pending = set(prompt_ids)
    succeeded: set[str] = set()
    while pending:
        event = await stream.get(60)
        if isinstance(event, ExecutionSuccess) and event.prompt_id in pending:
            succeeded.add(event.prompt_id)
        elif isinstance(event, Executing) and event.is_end and event.prompt_id in succeeded:
            pending.discard(event.prompt_id)
            succeeded.discard(event.prompt_id)
            on_end(event.prompt_id)
        elif isinstance(event, ExecutionError) and event.prompt_id in pending:
            raise RuntimeError(f"direct prompt failed: {event.exception_message}")


async def direct_pipelined(url: str, graphs: list[dict[str, Any]]) -> float:
    """Submit every prompt at once, fetch each one's outputs as it ends; seconds for all."""
    from generation.comfyui import ComfyClient

    async with ComfyClient(url, timeout=30) as comfy, comfy.events() as stream:
        started = time.perf_counter()
        ids = [(await comfy.submit(g, prompt_id=str(uuid.uuid4()))).prompt_id for g in graphs]
        fetches: list[asyncio.Task[int]] = []
        await _wait_end(stream, set(ids), lambda pid: fetches.append(asyncio.create_task(_fetch_outputs(comfy, pid))))
        await asyncio.gather(*fetches)
        return time.perf_counter() - started


async def direct_sequential(url: str, graphs: list[dict[str, Any]]) -> list[dict[str, float | str]]:
    """Submit, wait for the end, fetch the outputs, then the next: one record per prompt."""
    from generation.comfyui import ComfyClient

    records: list[dict[str, float | str]] = []
    async with ComfyClient(url, timeout=30) as comfy, comfy.events() as stream:
        for graph in graphs:
            request = time.time()
            accepted = await comfy.submit(graph, prompt_id=str(uuid.uuid4()))
            posted = time.time()
            await _wait_end(stream, {accepted.prompt_id}, lambda pid: None)
            await _fetch_outputs(comfy, accepted.prompt_id)
            records.append({"prompt_id": accepted.prompt_id, "request": request, "posted": posted, "have": time.time()})
    return records


async def server_times(url: str, prompt_ids: list[str]) -> dict[str, tuple[float, float]]:
    """(execution_start, execution_success) of each prompt in seconds, from ComfyUI's history."""
    from generation.comfyui import ComfyClient

    out = {}
    async with ComfyClient(url, timeout=30) as comfy:
        for pid in prompt_ids:
            data = await comfy._http.get_json(f"/history/{pid}")
            stamps = {name: body.get("timestamp") for name, body in data[pid]["status"]["messages"]}
            out[pid] = (stamps["execution_start"] / 1000, stamps["execution_success"] / 1000)
    return out
