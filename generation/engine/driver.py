"""Driving one claimed job on its ComfyUI backend (async; database work via sync_to_async).

Submit with a prompt_id chosen here (so a restarted worker can find the prompt again), follow the
WebSocket with the server's queue and history as the authority, fetch every output through
``/view``, store them, and finish. What can go wrong and what happens:

- the server refuses the graph (400) → failed, with its node_errors in words;
- a node raises at run time → failed, with node, exception type and message;
- the prompt is interrupted → cancelled if a person asked, failed otherwise;
- the server forgot the prompt (restart) → requeued and resubmitted, up to max_attempts;
- the server is unreachable → requeued without spending an attempt; reconcile retries later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from generation.comfyui import ComfyClient
from generation.comfyui.errors import (
    ComfyError,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyNotFound,
    ComfyPromptLost,
    ComfyRejected,
    ComfyUnreachable,
)
from generation.comfyui.events import (
    Executed,
    Executing,
    ExecutionCached,
    ExecutionStart,
    ExecutionSuccess,
    Preview,
    Progress,
)
from generation.comfyui.types import OutputFile, PromptStatus
from generation.engine.preview import PreviewFile
from generation.engine.progress import ProgressTracker
from generation.engine.session import IGNORED, Connection
from generation.engine.uploads import InputMissing, submit_with_inputs
from generation.models import JobStatus
from generation.services import claims, completion, reads
from generation.services.claims import Claim
from generation.services.jobs import job_log

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

PROGRESS_WRITE_INTERVAL = 0.25  # seconds between progress writes to the database
# A prompt that ends within this long of starting goes from submitted to succeeded in one write
# (its start time in the same update); a longer one is marked running after this delay.
RUNNING_WRITE_DELAY = 0.1
HEARTBEAT_INTERVAL = 5.0


def _db(fn: Callable[_P, _R]) -> Callable[_P, Awaitable[_R]]:
    return sync_to_async(fn, thread_sensitive=True)


class StoreThread:
    """A second database thread per worker process, on which sessions store their jobs' outputs.

    A session claims its next job as soon as a prompt ends, on the path from one prompt's end to
    the next one's start; on asgiref's one ``thread_sensitive`` thread that claim would wait behind
    the previous job's store. This thread keeps its database connection from one session to the
    next (a connect per single-job task otherwise); a connection that failed is dropped when the
    next session starts (:meth:`ready`).
    """

    _shared: tuple[int, StoreThread] | None = None

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tower-store")

    @classmethod
    def for_process(cls) -> StoreThread:
        """This process's store thread (django-q forks its workers: one per process id)."""
        shared = cls._shared
        if shared is None or shared[0] != os.getpid():
            shared = cls._shared = (os.getpid(), cls())
        return shared[1]

    async def call(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, **kwargs))

    async def ready(self) -> None:
        """Drop a connection of this thread that failed and cannot be used (what Django does
        between requests, without its age limit: this connection lives as long as the process)."""
        await self.call(_drop_broken_connections)

    @classmethod
    def close_connections(cls) -> None:
        """Close the connections of this process's store thread, if it has one (tests do, before
        their database is emptied or dropped)."""
        shared = cls._shared
        if shared is not None and shared[0] == os.getpid():
            shared[1]._pool.submit(connections.close_all).result()


def _drop_broken_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if connection.errors_occurred:
            if connection.is_usable():
                connection.errors_occurred = False
            else:
                connection.close()


def comfy_client(url: str, *, timeout: float | None = None, client_id: str | None = None) -> ComfyClient:
    """A ComfyClient with the engine's timeout."""
    return ComfyClient(url, timeout=settings.COMFYUI_TIMEOUT if timeout is None else timeout, client_id=client_id)


async def drive(
    claim: Claim,
    *,
    worker: str,
    connection: Connection | None = None,
    on_ended: Callable[[], None] | None = None,
    store: StoreThread | None = None,
) -> str:
    """Run a claimed job to its end; returns the job's final engine outcome (for logs and tests).

    ``connection`` is a session's shared client and WebSocket for the backend; without one, the
    job gets its own for its lifetime. ``on_ended`` is called (in the event loop) as soon as the
    server reports the prompt's success, before its outputs are fetched and stored: the prompt no
    longer takes a place in the server's queue, and a session sends the next one meanwhile.
    ``store`` is the process's :class:`StoreThread`, which sessions pass to store outputs on
    (without one, they are stored on the usual database thread).
    """
    async with contextlib.AsyncExitStack() as stack:
        if connection is None:
            comfy = await stack.enter_async_context(comfy_client(claim.backend_url, client_id=claim.client_id))
            events: Any = functools.partial(comfy.events, ignore=IGNORED)
        else:
            comfy, events = connection.comfy, connection.events.subscribe
        try:
            return await _drive(comfy, events, claim, worker=worker, on_ended=on_ended, store=store)
        except ComfyUnreachable as exc:
            reason = f"{claim.backend_name} unreachable: {exc}"
            await _db(claims.backend_mark_down)(backend_id=claim.backend_id, error=reason)
            await _db(claims.job_requeue)(job_id=claim.job_id, reason=reason, count_attempt=False)
            return "requeued:unreachable"
        finally:
            # Whatever the outcome, the live frame is stale now (outputs replace it).
            # Two unlinks of files that mostly do not exist: cheaper done here than in a thread.
            _preview_file(claim.job_id).remove()


def _preview_file(job_id: int) -> PreviewFile:
    root = settings.MEDIA_ROOT
    return PreviewFile(
        job_id=job_id, media_root=root if isinstance(root, Path) else Path(root), media_url=settings.MEDIA_URL
    )


async def _drive(
    comfy: ComfyClient,
    events: Any,
    claim: Claim,
    *,
    worker: str,
    on_ended: Callable[[], None] | None,
    store: StoreThread | None,
) -> str:
    prompt_id = claim.prompt_id
    async with events() as stream:
        if claim.resume:
            try:
                status = await comfy.prompt_status(prompt_id, expect_known=True)
            except ComfyPromptLost:
                return await _requeue(claim, f"{claim.backend_name} lost the prompt", "lost")
            if status in (PromptStatus.DONE, PromptStatus.ERROR, PromptStatus.INTERRUPTED):
                return await _finish_from_history(comfy, claim, status, store=store)
        else:
            try:
                if claim.fresh:
                    # A reproduction must really run: drop the server's cache of node outputs.
                    await comfy.free(free_memory=True)
                accepted = await submit_with_inputs(comfy, claim, prompt_id)
            except InputMissing as exc:
                await _db(completion.job_fail)(job_id=claim.job_id, error_type="input_missing", message=str(exc))
                return "failed:input"
            except ComfyRejected as exc:
                await _db(completion.job_fail)(
                    job_id=claim.job_id,
                    error_type="rejected",
                    message=str(exc),
                    node=_node_label(claim.graph, next(iter(exc.node_errors or {}), None)),
                    details={"error": exc.error, "node_errors": exc.node_errors},
                )
                return "failed:rejected"
            if accepted.prompt_id != prompt_id:
                prompt_id = accepted.prompt_id
                await _db(claims.job_record_prompt_id)(
                    job_id=claim.job_id, prompt_id=prompt_id, backend_id=claim.backend_id, honoured=False
                )
            if accepted.node_errors:
                await _db(job_log)(
                    job_id=claim.job_id,
                    message="some outputs were invalid and will be skipped by ComfyUI",
                    level="warning",
                    data={"node_errors": accepted.node_errors},
                )
        follow = _Follow(comfy, claim, prompt_id, worker=worker, on_ended=on_ended, store=store)
        return await follow.run(stream)


async def _requeue(claim: Claim, reason: str, tag: str) -> str:
    job = await _db(claims.job_requeue)(job_id=claim.job_id, reason=reason)
    if job is not None and job.status == JobStatus.FAILED:
        return "failed:attempts"
    return f"requeued:{tag}"


class _Follow:
    """Following one submitted prompt on the server's WebSocket to its end.

    Progress reaches the database at most every ``PROGRESS_WRITE_INTERVAL`` (with a trailing write,
    so the page never stays behind), a heartbeat proves the job is still driven, and ``running``
    is written only for prompts that last (a quick one goes from submitted to succeeded in one
    write). The background tasks report through ``self.owned`` when the job stopped being ours.
    """

    def __init__(
        self,
        comfy: ComfyClient,
        claim: Claim,
        prompt_id: str,
        *,
        worker: str,
        on_ended: Callable[[], None] | None,
        store: StoreThread | None,
    ) -> None:
        self.comfy, self.claim, self.prompt_id = comfy, claim, prompt_id
        self.worker, self.on_ended, self.store = worker, on_ended, store
        self.tracker = ProgressTracker(claim.graph)
        self.preview = _preview_file(claim.job_id)
        self.last_write = 0.0
        self.dirty = False  # the tracker moved since the last write
        self.owned = True
        self.began: datetime | None = None  # when ComfyUI started the prompt, until that is written
        # Outputs as the socket reported them (``executed``, sent for cached nodes too). They are
        # the prompt's outputs only if the socket saw it whole: start and end, and no drop between.
        self.reported: list[OutputFile] = []
        self.saw_start = self.saw_end = self.gap = False
        self.flusher: asyncio.Task[None] | None = None
        self.marker: asyncio.Task[None] | None = None

    async def run(self, stream: Any) -> str:
        claim = self.claim
        beat = asyncio.create_task(self._heartbeat())
        try:
            async for event in self.comfy.follow(
                self.prompt_id, stream=stream, stall_timeout=settings.COMFYUI_STALL_TIMEOUT, on_gap=self._on_gap
            ):
                if not self._track(event):
                    continue
                await self._write_or_defer(time.monotonic())
                if not self.owned:
                    # Cancelled meanwhile (the abort task stops the prompt) or adopted by another worker.
                    status = await _db(reads.job_status)(job_id=claim.job_id)
                    return "cancelled" if status == JobStatus.CANCELLED else "abandoned"
        except ComfyExecutionError as exc:
            await _db(completion.job_fail)(
                job_id=claim.job_id,
                error_type=exc.exception_type or "execution_error",
                message=exc.message or str(exc),
                node=_node_label(claim.graph, exc.node_id),
                details={"node_id": exc.node_id, "node_type": exc.node_type, "traceback": exc.traceback[-20:]},
            )
            return "failed:execution"
        except ComfyInterrupted:
            if await _db(reads.job_status)(job_id=claim.job_id) == JobStatus.CANCELLED:
                return "cancelled"
            await _db(completion.job_fail)(
                job_id=claim.job_id, error_type="interrupted", message="interrupted on the ComfyUI server"
            )
            return "failed:interrupted"
        except ComfyPromptLost:
            if await _db(reads.job_status)(job_id=claim.job_id) == JobStatus.CANCELLED:
                return "cancelled"
            return await _requeue(claim, f"{claim.backend_name} lost the prompt (restarted?)", "lost")
        finally:
            for task in (beat, self.flusher, self.marker):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        self.tracker.on_node(None)
        seen_whole = self.saw_start and self.saw_end and not self.gap and bool(self.reported)
        return await _collect(
            self.comfy,
            claim,
            self.prompt_id,
            self.tracker,
            reported=self.reported if seen_whole else None,
            started_at=self.began,
            store=self.store,
        )

    def _on_gap(self) -> None:
        self.gap = True

    def _track(self, event: Any) -> bool:
        """Take in one event; True when it moved the progress (a write is due)."""
        tracker = self.tracker
        if isinstance(event, Executed):
            self.reported.extend(event.files)
        elif isinstance(event, ExecutionSuccess):
            self.saw_end = event.timestamp is not None
            if self.on_ended is not None:
                self.on_ended()
        elif isinstance(event, ExecutionStart):
            if not self.saw_start:
                self.saw_start = True
                self.began = timezone.now()
                self.marker = asyncio.create_task(self._mark_running(self.began))
                tracker.started = self.last_write = time.monotonic()
        elif isinstance(event, ExecutionCached):
            tracker.on_cached(event.nodes)
            return True
        elif isinstance(event, Executing) and event.node is not None:
            tracker.on_node(event.node)
            return True
        elif isinstance(event, Progress):
            tracker.on_progress(event.value, event.max)
            return True
        elif isinstance(event, Preview):
            self.preview.offer(event)
            return True
        return False

    async def _write_or_defer(self, now: float) -> None:
        if now - self.last_write >= PROGRESS_WRITE_INTERVAL:
            self.owned = await self._write_progress(now)
            return
        self.dirty = True
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self._flush_later())

    async def _write_progress(self, now: float) -> bool:
        # last_write is set before awaiting, so a write never starts within the interval of another.
        self.last_write, self.dirty = now, False
        preview, tracker = self.preview, self.tracker
        if preview.due(now):
            await asyncio.to_thread(preview.write, now)
        return await _db(completion.job_progress)(
            job_id=self.claim.job_id,
            project_id=self.claim.project_id,
            fraction=tracker.fraction,
            node=tracker.node_label(tracker.current),
            eta_seconds=tracker.eta_seconds(now),
            worker=self.worker,
            preview=preview.url,
        )

    async def _flush_later(self) -> None:
        """The trailing write of a throttled update: without it, fast nodes followed by a long one
        (which sends nothing while it runs) leave the page at the value before the fast ones."""
        while self.dirty:
            wait = self.last_write + PROGRESS_WRITE_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self.owned = await self._write_progress(time.monotonic())

    async def _mark_running(self, at: datetime) -> None:
        await asyncio.sleep(RUNNING_WRITE_DELAY)
        await _db(completion.job_started)(job_id=self.claim.job_id, project_id=self.claim.project_id, started_at=at)
        self.began = None  # written: the completion need not write it again

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            self.owned = await _db(claims.job_heartbeat)(job_id=self.claim.job_id, worker=self.worker)


async def _finish_from_history(
    comfy: ComfyClient, claim: Claim, status: PromptStatus, *, store: StoreThread | None
) -> str:
    if status is PromptStatus.DONE:
        await _db(completion.job_started)(job_id=claim.job_id, project_id=claim.project_id)
        return await _collect(comfy, claim, claim.prompt_id, ProgressTracker(claim.graph), store=store)
    entry = await comfy.history(claim.prompt_id)
    failure = (entry.failure if entry else None) or {}
    if status is PromptStatus.INTERRUPTED:
        if await _db(reads.job_status)(job_id=claim.job_id) == JobStatus.CANCELLED:
            return "cancelled"
        await _db(completion.job_fail)(
            job_id=claim.job_id, error_type="interrupted", message="interrupted on the server"
        )
        return "failed:interrupted"
    await _db(completion.job_fail)(
        job_id=claim.job_id,
        error_type=str(failure.get("exception_type") or "execution_error"),
        message=str(failure.get("exception_message") or "the prompt failed on the server"),
        node=_node_label(claim.graph, failure.get("node_id")),
        details={"node_id": failure.get("node_id"), "node_type": failure.get("node_type")},
    )
    return "failed:execution"


async def _collect(
    comfy: ComfyClient,
    claim: Claim,
    prompt_id: str,
    tracker: ProgressTracker,
    *,
    reported: list[OutputFile] | None = None,
    started_at: datetime | None = None,
    store: StoreThread | None = None,
) -> str:
    """Fetch and store the outputs: those the socket reported when it saw the whole prompt (one
    request fewer per job), else the ones ``/history`` lists."""
    if reported:
        outputs = reported
    else:
        entry = await comfy.history(prompt_id)
        if entry is None:
            return await _requeue(claim, "finished prompt missing from history", "lost")
        outputs = entry.outputs
    files = [f for f in outputs if f.type == "output"] or list(outputs)
    fetched = []
    try:
        for f in files:
            data = await comfy.view(f.filename, f.subfolder, f.type, max_bytes=settings.COMFYUI_MAX_OUTPUT_BYTES)
            fetched.append(completion.FetchedOutput(node_id=f.node_id, filename=f.filename, data=data))
    except (ComfyNotFound, ComfyRejected) as exc:
        await _db(completion.job_fail)(job_id=claim.job_id, error_type="output_missing", message=str(exc))
        return "failed:outputs"
    except ComfyError as exc:
        if isinstance(exc, ComfyUnreachable):
            raise
        await _db(completion.job_fail)(job_id=claim.job_id, error_type="output_invalid", message=str(exc))
        return "failed:outputs"
    if not fetched:
        await _db(job_log)(job_id=claim.job_id, message="the workflow produced no output files", level="warning")
    complete = (
        functools.partial(store.call, completion.job_complete) if store is not None else _db(completion.job_complete)
    )
    done = await complete(
        job_id=claim.job_id,
        outputs=fetched,
        node_seconds=tracker.node_seconds or None,
        graph=claim.graph,
        started_at=started_at,
        known=claim.known,
    )
    return "succeeded" if done else "cancelled"


def _node_label(graph: dict[str, Any], node_id: str | None) -> str:
    if not node_id:
        return ""
    info = graph.get(str(node_id)) or {}
    return f"#{node_id} {info.get('class_type', '')}".strip()
