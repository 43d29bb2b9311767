"""The one place events leave Tower: JSON events to Channels groups, only after commit.

Groups: ``job.<id>``, ``project.<id>`` and ``user.<id>``. Every event carries ``type``, ``job``,
``project`` and its data; consumers forward them untouched to sockets that joined a group, and the
page consumer turns them into HTML fragments. Progress is throttled per job (at most
``PROGRESS_MAX_PER_SECOND``) in the process that drives the job; the last step always goes out.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from asgiref.sync import async_to_sync
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


def _send_now(groups: list[str], event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:  # pragma: no cover - settings always define one
        return
    message = {"type": CHANNEL_MESSAGE_TYPE, "event": event}
    try:
        # One event loop (and Redis connection) for all groups: each async_to_sync call makes its own.
        async_to_sync(_send_all)(layer, groups, message)
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
