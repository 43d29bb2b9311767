"""The one place events leave Tower: JSON events to Channels groups, only after commit.

Groups: ``job.<id>``, ``project.<id>``, ``user.<id>`` and ``orchestration.<id>`` (quality's
orchestration events, which carry ``orchestration`` instead of ``job``). Every event carries
``type``, ``job``, ``project`` and its data; consumers forward them untouched to sockets that
joined a group, and the page consumer turns them into HTML fragments. Each event goes to each of
its groups through the channel layer's ``group_send``; a socket in several of them gets it once
(``tower.core.layers`` drops the repeats). Progress is throttled per job (at most
``PROGRESS_MAX_PER_SECOND``) in the process that drives the job; the last step always goes out.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import uuid
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from tower.core.layers import DELIVERY_KEY

logger = logging.getLogger(__name__)

PROGRESS_MAX_PER_SECOND = 10
EVENT_TYPES = frozenset({"job_queued", "progress", "job_complete", "job_failed", "job_cancelled", "quality_evaluation"})
# Events of quality's orchestrations (sheet → loop → video); they name an orchestration, not a job.
ORCHESTRATION_EVENT_TYPES = frozenset(
    {"orchestration_progress", "phase_passed", "orchestration_complete", "orchestration_failed"}
)
# Events of movie production; they name a scene or an episode (and its project), not a job.
# ``assembly_progress`` is throttled by the worker that assembles (generation.assembly_task).
MOVIE_EVENT_TYPES = frozenset(
    {"segment_complete", "join_evaluated", "scene_complete", "assembly_progress", "assembly_complete"}
)
# Channels maps the message "type" to a consumer method name: "tower.event" → tower_event().
CHANNEL_MESSAGE_TYPE = "tower.event"

_last_progress: dict[int, float] = {}
_lock = threading.Lock()


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def project_group(project_id: int) -> str:
    return f"project.{project_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def orchestration_group(orchestration_id: int) -> str:
    return f"orchestration.{orchestration_id}"


def scene_group(scene_id: int) -> str:
    return f"scene.{scene_id}"


def episode_group(episode_id: int) -> str:
    return f"episode.{episode_id}"


SEND_TIMEOUT = 10.0  # seconds an event's sends (and a flush) may take before they are given up (and logged)


async def _send_event(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    """One event to each of its groups, the groups at once (the layer's connection pool serves
    them together); every send has ended when this returns, so the next event lands after it."""
    results = await asyncio.gather(*(layer.group_send(group, message) for group in groups), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class _Sender:
    """One event loop thread per process that sends every event, in order, without the caller
    waiting.

    The Redis channel layer keeps a connection pool per event loop; ``async_to_sync`` made a new
    loop, and so a new Redis connection, for every event. A long-lived loop keeps one. Events go
    into a queue that one coroutine drains, one event after the other (:func:`_send_event`), so
    their order is kept. :func:`flush` waits until everything queued is out: tasks call it before
    they return, and it runs at exit. Created lazily per process id, since django-q forks its
    workers.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.pending: list[tuple[list[str], dict[str, Any]]] = []
        self.wake = asyncio.Event()
        self.idle = threading.Event()
        self.idle.set()
        self.waking = False  # a wake-up is scheduled and has not taken the pending events yet
        self._guard = threading.Lock()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tower-events", daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._drain(), self.loop)

    def put(self, groups: list[str], message: dict[str, Any]) -> None:
        with self._guard:
            self.pending.append((groups, message))
            self.idle.clear()
            # One wake-up per batch: the loop takes everything pending when it runs (waking it
            # is a syscall and a thread switch, and a burst queues dozens of events at once).
            wake, self.waking = not self.waking, True
        if wake:
            self.loop.call_soon_threadsafe(self.wake.set)

    async def _drain(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            with self._guard:
                batch, self.pending = self.pending, []
                self.waking = False
            if batch:
                await self._send(batch)
            with self._guard:
                if not self.pending:
                    self.idle.set()

    async def _send(self, batch: list[tuple[list[str], dict[str, Any]]]) -> None:
        layer = get_channel_layer()
        for index, (groups, message) in enumerate(batch):
            try:
                await asyncio.wait_for(_send_event(layer, groups, message), SEND_TIMEOUT)
            except Exception:  # a dead broker must not fail a job; pages re-read the DB on reconnect
                # The rest of the batch too: each would wait as long for the same broker.
                lost = batch[index:]
                kinds = sorted({str(m["event"].get("type")) for _, m in lost})
                logger.warning("could not send %d event(s) (%s)", len(lost), ", ".join(kinds), exc_info=True)
                return

    def flush(self, timeout: float) -> bool:
        return self.idle.wait(timeout)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():
            _sender = _Sender()
        return _sender


def flush(timeout: float = SEND_TIMEOUT) -> None:
    """Wait until every event this process queued has been sent (or given up on)."""
    sender = _sender
    if sender is not None and sender.pid == os.getpid() and not sender.flush(timeout):
        logger.warning("events still unsent after %.0f s", timeout)


atexit.register(flush)


def _send_now(groups: list[str], event: dict[str, Any]) -> None:
    # One id for the event's copies: a socket in several of its groups gets it once (the layer drops repeats).
    _get_sender().put(groups, {"type": CHANNEL_MESSAGE_TYPE, "event": event, DELIVERY_KEY: uuid.uuid4().hex})


def job_event(event_type: str, *, job_id: int, project_id: int, user_id: int | None = None, **data: Any) -> None:
    """Queue an event for after the current transaction commits (at once when none is open)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    event = {
        "type": event_type,
        "job": job_id,
        "project": project_id,
        "at": timezone.now().isoformat(),
        **data,
    }
    groups = [job_group(job_id), project_group(project_id)]
    if user_id is not None:
        groups.append(user_group(user_id))
    if event_type in {"job_complete", "job_failed", "job_cancelled"}:
        with _lock:
            _last_progress.pop(job_id, None)
    transaction.on_commit(lambda: _send_now(groups, event))


def orchestration_event(
    event_type: str,
    *,
    orchestration_id: int,
    project_id: int,
    phase: int,
    status: str,
    user_id: int | None = None,
    **data: Any,
) -> None:
    """Queue an orchestration's event for its own group and its project's, after commit."""
    if event_type not in ORCHESTRATION_EVENT_TYPES:
        raise ValueError(f"unknown orchestration event type {event_type!r}")
    event = {
        "type": event_type,
        "orchestration": orchestration_id,
        "project": project_id,
        "phase": phase,
        "status": status,
        "at": timezone.now().isoformat(),
        **data,
    }
    groups = [orchestration_group(orchestration_id), project_group(project_id)]
    if user_id is not None:
        groups.append(user_group(user_id))
    transaction.on_commit(lambda: _send_now(groups, event))


def movie_event(
    event_type: str,
    *,
    project_id: int,
    episode_id: int,
    scene_id: int | None = None,
    user_id: int | None = None,
    **data: Any,
) -> None:
    """Queue a movie event for its episode's group, its scene's (when it names one) and its project's, after commit."""
    if event_type not in MOVIE_EVENT_TYPES:
        raise ValueError(f"unknown movie event type {event_type!r}")
    event = {
        "type": event_type,
        "project": project_id,
        "episode": episode_id,
        "scene": scene_id,
        "at": timezone.now().isoformat(),
        **data,
    }
    groups = [episode_group(episode_id), project_group(project_id)]
    if scene_id is not None:
        groups.insert(0, scene_group(scene_id))
    if user_id is not None:
        groups.append(user_group(user_id))
    transaction.on_commit(lambda: _send_now(groups, event))


def progress_event(
    *,
    job_id: int,
    project_id: int,
    value: float,
    maximum: float,
    node: str | None = None,
    eta_seconds: float | None = None,
    force: bool = False,
) -> bool:
    """Send a throttled ``progress`` event; returns whether it was sent."""
    now = time.monotonic()
    final = maximum > 0 and value >= maximum
    with _lock:
        last = _last_progress.get(job_id)
        if not (force or final) and last is not None and now - last < 1.0 / PROGRESS_MAX_PER_SECOND:
            return False
        _last_progress[job_id] = now
    job_event(
        "progress",
        job_id=job_id,
        project_id=project_id,
        value=value,
        max=maximum,
        node=node,
        eta_seconds=eta_seconds,
    )
    return True
