"""Following one prompt to its end over the WebSocket, with /queue + /history as the authority.

The WebSocket is fast but not reliable (it stalls, drops, and says nothing about prompts that
ended while it was down), so whenever it is silent for ``stall_timeout`` seconds, or after it
reconnects, the prompt's fate is asked over HTTP.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from generation.comfyui.errors import ComfyExecutionError, ComfyInterrupted, ComfyUnreachable
from generation.comfyui.events import (
    Disconnected,
    Event,
    Executing,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionSuccess,
    Preview,
    Status,
    event_prompt_id,
)
from generation.comfyui.types import PromptStatus

if TYPE_CHECKING:
    from generation.comfyui.client import ComfyClient
    from generation.comfyui.ws import EventStream

END_MARKER_WAIT = 2.0  # after execution_success, how long to wait for executing{node: null}


async def _fate(client: ComfyClient, prompt_id: str) -> PromptStatus | None:
    """The prompt's status from HTTP; None while the server cannot be asked (it may be restarting)."""
    try:
        return await client.prompt_status(prompt_id, expect_known=True)
    except ComfyUnreachable:
        return None


async def _raise_failure(client: ComfyClient, prompt_id: str, status: PromptStatus) -> None:
    entry = await client.history(prompt_id)
    failure = (entry.failure if entry else None) or {}
    if status is PromptStatus.INTERRUPTED:
        raise ComfyInterrupted(prompt_id, failure.get("node_id"), failure.get("node_type"))
    raise ComfyExecutionError.from_message({"prompt_id": prompt_id, **failure})


async def follow(
    client: ComfyClient,
    prompt_id: str,
    *,
    stream: EventStream | None = None,
    stall_timeout: float = 15.0,
    timeout: float | None = None,
    on_gap: Callable[[], None] | None = None,
) -> AsyncIterator[Event]:
    """Yield the prompt's events until it ends; raise if it fails, is interrupted or is lost.

    The last event of a success is ExecutionSuccess (then the Executing end marker when it
    arrives). When the end was learnt over HTTP, an ExecutionSuccess with timestamp None is
    yielded; read the outputs with ``client.history(prompt_id)``. Pass the ``stream`` that was
    open before submitting to miss nothing; otherwise one is opened here. ``on_gap`` is called
    whenever the socket dropped meanwhile (messages may have been missed: the caller should not
    rely on having seen every ``executed``).
    """
    own = stream is None
    if stream is None:
        stream = client.events()
        await stream.start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        if own:
            # Opened after submitting: the prompt may have ended already.
            status = await _fate(client, prompt_id)
            if status is PromptStatus.DONE:
                yield ExecutionSuccess(prompt_id, None)
                return
            if status in (PromptStatus.ERROR, PromptStatus.INTERRUPTED):
                await _raise_failure(client, prompt_id, status)
        ours = False  # the last `executing` was one of our nodes (legacy previews carry no id)
        succeeded = False
        reconnected = False
        while True:
            wait = END_MARKER_WAIT if succeeded else stall_timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")
                wait = min(wait, left)
            try:
                event = await stream.get(wait)
            except TimeoutError:
                if succeeded:
                    return
                event = None
            if event is not None:
                if isinstance(event, Disconnected):
                    reconnected = True
                    if on_gap is not None:
                        on_gap()
                    continue
                if isinstance(event, Status):
                    if event.sid is None or not reconnected:
                        continue
                    reconnected = False
                elif isinstance(event, Preview) and event.prompt_id is None:
                    if ours:
                        yield event
                    continue
                elif event_prompt_id(event) != prompt_id:
                    if isinstance(event, Executing) and event.prompt_id is not None:
                        ours = False
                    continue
                else:
                    if isinstance(event, Executing):
                        ours = event.node is not None
                    yield event
                    if isinstance(event, ExecutionSuccess):
                        succeeded = True
                    elif isinstance(event, ExecutionError):
                        raise ComfyExecutionError.from_message({"prompt_id": prompt_id, **event.raw})
                    elif isinstance(event, ExecutionInterrupted):
                        raise ComfyInterrupted(prompt_id, event.node_id, event.node_type)
                    if not (isinstance(event, Executing) and event.is_end):
                        continue
                    if succeeded:
                        return
            # Silence, a reconnect, or an end we cannot explain: the server decides.
            status = await _fate(client, prompt_id)
            if status is PromptStatus.DONE:
                if not succeeded:
                    yield ExecutionSuccess(prompt_id, None)
                return
            if status in (PromptStatus.ERROR, PromptStatus.INTERRUPTED):
                await _raise_failure(client, prompt_id, status)
    finally:
        if own:
            await stream.close()
