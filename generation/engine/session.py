"""One worker task driving many jobs: shared ComfyUI clients and WebSockets, claims in a loop.

A django-q task per job costs more than the job itself on a fast server: a fresh event loop, HTTP
client and WebSocket handshake for every prompt, and a broker round trip between one job's end and
the next one's start. A session keeps one client and one WebSocket
per backend for the life of the task and, whenever it has room, claims the next queued job itself,
so a busy queue flows through a few long-lived tasks. Each job is still driven by
:func:`generation.engine.driver.drive` with its own claim, heartbeat and outcome, so everything
about one job (cancel, adoption by reconcile after a crash, retries) works as before.

Every prompt of a session uses the session's client id, so one WebSocket per backend receives all
of their events; :class:`SharedEvents` hands each follower every event and ``follow`` keeps its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from generation.comfyui import ComfyClient
from generation.comfyui.events import Event
from generation.comfyui.ws import EventStream, next_event

logger = logging.getLogger(__name__)

# What the engine never reads: per-node state snapshots (progress comes from ``executing`` and
# ``progress``), sent at every node change, and the queue-length broadcasts every socket gets when
# any prompt is queued, starts or ends. Over half of a short prompt's messages.
IGNORED = ("progress_state", "status")


class Subscription:
    """What ``follow`` needs of a stream: ``get(timeout)``; failures keep failing for later calls."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()

    def put(self, item: Event | BaseException) -> None:
        self._queue.put_nowait(item)

    async def get(self, timeout: float | None = None) -> Event:
        return await next_event(self._queue, timeout)


class SharedEvents:
    """One WebSocket to a backend, fanned out to every job the session follows there."""

    def __init__(self, comfy: ComfyClient) -> None:
        self._comfy = comfy
        self._stream: EventStream | None = None
        self._pump: asyncio.Task[None] | None = None
        self._subscribers: set[Subscription] = set()
        self._lock = asyncio.Lock()

    async def _ensure(self) -> None:
        async with self._lock:
            if self._stream is not None:
                return
            stream = self._comfy.events(ignore=IGNORED)
            await stream.start()  # ComfyUnreachable when the socket cannot be opened
            self._stream = stream
            self._pump = asyncio.create_task(self._run(stream), name=f"shared-events-{self._comfy.base_url}")

    async def _run(self, stream: EventStream) -> None:
        while True:
            try:
                item: Event | BaseException = await stream.get()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream gave up (ComfyUnreachable): every follower hears it
                item = exc
            for subscriber in list(self._subscribers):
                subscriber.put(item)
            if isinstance(item, BaseException):
                self._stream = None
                await stream.close()
                return

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Subscribe before submitting, so no event of the prompt is missed."""
        await self._ensure()
        subscription = Subscription()
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    async def close(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()


class Connection:
    """A session's client and event fan-out for one backend URL."""

    def __init__(self, comfy: ComfyClient) -> None:
        self.comfy = comfy
        self.events = SharedEvents(comfy)

    async def close(self) -> None:
        await self.events.close()
        await self.comfy.close()


class Session:
    """Drive ``first`` and, while there is room, the jobs ``claim_next`` hands over.

    ``claim_next(client_id, ended)`` claims one more queued job for this process (or returns
    None); ``drive(claim, connection, on_ended)`` runs one job to its end and calls ``on_ended``
    when the server reports its prompt done. A session keeps at most ``concurrency`` prompts on
    the servers: a job whose prompt has ended gives up its place at once, so the next prompt is
    claimed and sent while that job's outputs are still being fetched and stored (``ended``, the
    ids of such jobs, tells the claim that they no longer take a place in their server's queue),
    and at most twice ``concurrency`` more jobs are being stored at the same time (storing can
    take longer than a short prompt, and a claim that waited for it left the server idle). No
    new job is claimed after ``max_jobs`` or ``max_seconds`` (the task then ends once its jobs
    have, and the next task carries on), so a task never outlives django-q's timeout.
    """

    def __init__(
        self,
        *,
        connect: Callable[[str, str], ComfyClient],
        claim_next: Callable[[str, frozenset[int]], Awaitable[Any]],
        drive: Callable[[Any, Connection, Callable[[], None]], Coroutine[Any, Any, str]],
        concurrency: int,
        max_jobs: int,
        max_seconds: float,
        client_id: str | None = None,
    ) -> None:
        self.client_id = client_id or f"tower-{uuid.uuid4().hex[:12]}"
        self._connect = connect
        self._claim_next = claim_next
        self._drive = drive
        self.concurrency = max(1, concurrency)
        self.max_jobs = max(1, max_jobs)
        self.deadline = time.monotonic() + max_seconds
        self.connections: dict[str, Connection] = {}
        self.outcomes: dict[int, str] = {}
        self.claimed = 0
        self._live: set[int] = set()  # jobs being driven
        self._ended: set[int] = set()  # of those, the ones whose prompt the server has finished
        self._wake = asyncio.Event()

    def connection(self, url: str) -> Connection:
        if url not in self.connections:
            self.connections[url] = Connection(self._connect(url, self.client_id))
        return self.connections[url]

    def _may_claim(self) -> bool:
        return self.claimed < self.max_jobs and time.monotonic() < self.deadline

    def _room(self) -> bool:
        live = len(self._live)
        return live - len(self._ended) < self.concurrency and live < 3 * self.concurrency

    def _prompt_ended(self, job_id: int) -> None:
        if job_id in self._live and job_id not in self._ended:
            self._ended.add(job_id)
            self._wake.set()

    async def run(self, first: Any) -> dict[int, str]:
        running: dict[asyncio.Task[str], int] = {}

        def start(claim: Any) -> None:
            self.claimed += 1
            self._live.add(claim.job_id)
            ended = functools.partial(self._prompt_ended, claim.job_id)
            task = asyncio.create_task(self._drive(claim, self.connection(claim.backend_url), ended))
            running[task] = claim.job_id

        start(first)
        try:
            while True:
                while self._room() and self._may_claim():
                    claim = await self._claim_next(self.client_id, frozenset(self._ended))
                    if claim is None:
                        break
                    start(claim)
                if not running:
                    break
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait([*running, waiter], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                for task in [t for t in running if t in done]:
                    job_id = running.pop(task)
                    self._live.discard(job_id)
                    self._ended.discard(job_id)
                    try:
                        self.outcomes[job_id] = task.result()
                    except Exception as exc:
                        # One job's bug must not stop the others; its heartbeat stops, so
                        # reconcile adopts it as it would after a crashed task.
                        logger.exception("driving job %s failed", job_id)
                        self.outcomes[job_id] = f"error:{type(exc).__name__}"
        finally:
            for task in running:
                task.cancel()
            for connection in self.connections.values():
                await connection.close()
        return self.outcomes
