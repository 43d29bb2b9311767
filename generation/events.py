"""The one place events leave Tower: JSON events to Channels groups, only after commit.

Groups: ``job.<id>``, ``project.<id>`` and ``user.<id>``. Every event carries ``type``, ``job``,
``project`` and its data; consumers forward them untouched to sockets that joined a group, and the
page consumer turns them into HTML fragments. Progress is throttled per job (at most
``PROGRESS_MAX_PER_SECOND``) in the process that drives the job; the last step always goes out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

PROGRESS_MAX_PER_SECOND = 10
EVENT_TYPES = frozenset({"job_queued", "progress", "job_complete", "job_failed", "job_cancelled", "quality_evaluation"})
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


async def _send_all(layer: Any, groups: list[str], message: dict[str, Any]) -> None:
    for group in groups:
        await layer.group_send(group, message)


SEND_TIMEOUT = 10.0  # seconds one send may take before it is given up (and logged)


class _Sender:
    """One event loop thread per process that sends every event.

    The Redis channel layer keeps a connection pool per event loop; ``async_to_sync`` made a new
    loop, and so a new Redis connection, for every event (a fifth of a job's CPU time in the
    worker, bench/engine.py). A long-lived loop keeps one. Created lazily per process id, since
    django-q forks its workers.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tower-events", daemon=True)
        self.thread.start()

    def submit(self, coro: Any) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


_sender: _Sender | None = None
_sender_lock = threading.Lock()


def _get_sender() -> _Sender:
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid():
            _sender = _Sender()
        return _sender


def _send_now(groups: list[str], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:  # pragma: no cover - settings always define one
        return
    message = {"type": CHANNEL_MESSAGE_TYPE, "event": event}
    try:
        # Waits for the send: events keep their order, and a task's events are out when it returns.
        _get_sender().submit(_send_all(layer, groups, message)).result(timeout=SEND_TIMEOUT)
    except Exception:  # a dead broker must not fail the job; pages re-read the DB on reconnect
        logger.warning("could not send %s to %s", event.get("type"), ", ".join(groups), exc_info=True)


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
