"""One worker task driving many jobs: shared ComfyUI clients and WebSockets, claims in a loop.

A django-q task per job cost more than the job itself on a fast server: a fresh event loop, HTTP
client and WebSocket handshake for every prompt, and a broker round trip between one job's end and
the next one's start (bench/engine.py, zero compute). A session keeps one client and one WebSocket
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
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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

    ``claim_next(client_id)`` claims one more queued job for this process (or returns None);
    ``drive(claim, connection)`` runs one job to its end. With ``claim_next_sync`` (the same claim,
    synchronous), a job that ends can take the next one in the database hop that stores its
    result (:meth:`claim_following`): one thread hop and one wake-up fewer per job. At most
    ``concurrency`` jobs are driven at once (a claim handed over is driven at once all the same: its
    slot is the one of the job that ended); no new job is claimed after ``max_jobs`` or
    ``max_seconds`` (the task then ends once its jobs have, and the next task carries on), so a
    task never outlives django-q's timeout.
    """

    def __init__(
        self,
        *,
        connect: Callable[[str, str], ComfyClient],
        claim_next: Callable[[str], Awaitable[Any]],
        drive: Callable[[Any, Connection], Awaitable[str]],
        concurrency: int,
        max_jobs: int,
        max_seconds: float,
        client_id: str | None = None,
        claim_next_sync: Callable[[str], Any] | None = None,
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
        self._claim_next_sync = claim_next_sync
        # Jobs claimed by claim_following(), started by run() as soon as it is back in the loop.
        self._handed: list[Any] = []
        self._hand_lock = threading.Lock()

    def connection(self, url: str) -> Connection:
        if url not in self.connections:
            self.connections[url] = Connection(self._connect(url, self.client_id))
        return self.connections[url]

    def _may_claim(self) -> bool:
        return self.claimed < self.max_jobs and time.monotonic() < self.deadline

    def claim_following(self) -> None:
        """Claim the next job for the slot of a job that is ending (synchronous: called in the
        database thread, right after that job's result is stored). A claim made here is always
        driven: :meth:`run` starts it before it claims anything else."""
        if self._claim_next_sync is None:
            return
        with self._hand_lock:
            if self._handed or not self._may_claim():
                return
            self.claimed += 1  # reserved before the claim: max_jobs holds with claims in flight
        claim = None
        try:
            claim = self._claim_next_sync(self.client_id)
        finally:
            with self._hand_lock:
                if claim is None:
                    self.claimed -= 1
                else:
                    self._handed.append(claim)

    async def run(self, first: Any) -> dict[int, str]:
        running: dict[asyncio.Task[str], int] = {}

        def start(claim: Any, *, counted: bool = False) -> None:
            if not counted:
                with self._hand_lock:
                    self.claimed += 1
            task = asyncio.create_task(self._drive(claim, self.connection(claim.backend_url)))
            running[task] = claim.job_id

        start(first)
        try:
            while True:
                with self._hand_lock:
                    handed, self._handed = self._handed, []
                for claim in handed:  # claimed already: driven whatever the concurrency
                    start(claim, counted=True)
                while len(running) < self.concurrency and self._may_claim():
                    claim = await self._claim_next(self.client_id)
                    if claim is None:
                        break
                    start(claim)
                if not running:
                    break
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    job_id = running.pop(task)
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
