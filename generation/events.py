"""The one place events leave Tower: JSON events to Channels groups, only after commit.

Groups: ``job.<id>``, ``project.<id>``, ``user.<id>`` and ``orchestration.<id>`` (quality's
orchestration events, which carry ``orchestration`` instead of ``job``). Every event carries ``type``, ``job``,
``project`` and its data; consumers forward them untouched to sockets that joined a group, and the
page consumer turns them into HTML fragments. Progress is throttled per job (at most
``PROGRESS_MAX_PER_SECOND``) in the process that drives the job; the last step always goes out.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

PROGRESS_MAX_PER_SECOND = 10
EVENT_TYPES = frozenset({"job_queued", "progress", "job_complete", "job_failed", "job_cancelled", "quality_evaluation"})
# Events of quality's orchestrations (sheet → loop → video); they name an orchestration, not a job.
ORCHESTRATION_EVENT_TYPES = frozenset(
    {"orchestration_progress", "phase_passed", "orchestration_complete", "orchestration_failed"}
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


SEND_TIMEOUT = 10.0  # seconds a flush waits for the events before it is given up (and logged)

# ARGV: one message per key, then one capacity per key, then the time and the expiry (the same
# script channels_redis runs for a group_send).
_DELIVER_LUA = """
local over_capacity = 0
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


async def _send_batch(layer: Any, batch: list[tuple[list[str], dict[str, Any]]]) -> None:
    """Deliver several events, each to its groups, in two Redis round trips.

    ``group_send`` costs four round trips per group, and an event goes to three groups (job,
    project, user): a tenth of a job's CPU time in the engine (bench/engine.py). Here one pipeline
    reads every group's members, and a second delivers each event once to every channel of its
    groups (a socket that joined both the job's and the project's group gets it once), with the
    layer's own expiry and capacity rules. A layer other than channels_redis' (a test's in-memory
    one) gets plain ``group_send`` calls.
    """
    if not all(hasattr(layer, name) for name in ("_group_key", "_map_channel_keys_to_connection", "connection")):
        for groups, message in batch:
            for group in groups:
                await layer.group_send(group, message)
        return
    now = int(time.time())
    clock = time.monotonic()
    groups = sorted({g for gs, _ in batch for g in gs})
    by_connection: dict[int, list[str]] = {}
    for group in groups:
        by_connection.setdefault(layer.consistent_hash(group), []).append(group)
    members: dict[str, list[str]] = {}
    for index, names in by_connection.items():
        pipe = layer.connection(index).pipeline(transaction=False)
        for group in names:
            key = layer._group_key(group)
            if _cleanup_due(key, clock):
                pipe.zremrangebyscore(key, min=0, max=now - layer.group_expiry)
            pipe.zrange(key, 0, -1)
        replies = [r for r in await pipe.execute() if isinstance(r, list)]  # the ZRANGEs' replies
        for group, channels in zip(names, replies, strict=True):
            members[group] = [c.decode() for c in channels]
    pipes: dict[int, Any] = {}
    for event_groups, message in batch:
        channels = list(dict.fromkeys(c for g in event_groups for c in members[g]))
        if not channels:
            continue
        keys_by_connection, key_message, key_capacity = layer._map_channel_keys_to_connection(channels, message)
        for index, keys in keys_by_connection.items():
            pipe = pipes.get(index)
            if pipe is None:
                pipe = pipes[index] = layer.connection(index).pipeline(transaction=False)
            for key in keys:
                if _cleanup_due(key, clock):
                    pipe.zremrangebyscore(key, min=0, max=now - int(layer.expiry))
            score = _next_score()  # the receiver reads a channel in score order: one per event
            args = [key_message[k] for k in keys] + [key_capacity[k] for k in keys] + [score, int(layer.expiry)]
            pipe.eval(_DELIVER_LUA, len(keys), *keys, *args)
    for pipe in pipes.values():
        await pipe.execute()


# Expired group members (after the layer's group_expiry, a day) and expired messages (after its
# expiry, a minute) are removed at most once a second per key, not before every event: those
# removals were half the commands of a delivery. A member or message that expired less than a
# second ago may still be sent to: a stale member's channel is never read (and its key expires),
# and a reader a minute behind may get a message up to a second older than the layer's expiry.
CLEANUP_INTERVAL = 1.0
_cleaned: dict[bytes | str, float] = {}


def _cleanup_due(key: bytes | str, clock: float) -> bool:
    last = _cleaned.get(key)
    if last is not None and clock - last < CLEANUP_INTERVAL:
        return False
    if len(_cleaned) > 10_000:  # sockets come and go: forget keys not seen for a while
        for stale in [k for k, at in _cleaned.items() if clock - at >= CLEANUP_INTERVAL]:
            del _cleaned[stale]
    _cleaned[key] = clock
    return True


_last_score = 0.0


def _next_score() -> float:
    """A strictly increasing timestamp. Messages on a channel are ordered by this score, and ties
    fall back to the (randomly prefixed) message bytes: two events with one score could swap."""
    global _last_score
    _last_score = max(time.time(), _last_score + 1e-5)
    return _last_score


class _Sender:
    """One event loop thread per process that sends every event, in order, without the caller
    waiting.

    The Redis channel layer keeps a connection pool per event loop; ``async_to_sync`` made a new
    loop, and so a new Redis connection, for every event. A long-lived loop keeps one. Events go
    into a queue that one coroutine drains, sending whatever has gathered meanwhile as one batch
    (:func:`_send_batch`), so the order of events is kept and a burst (a batch of jobs queued at
    once) costs a few round trips. :func:`flush` waits until everything queued is out: tasks call
    it before they return, and it runs at exit. Created lazily per process id, since django-q
    forks its workers.
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
                layer = get_channel_layer()
                try:
                    await asyncio.wait_for(_send_batch(layer, batch), SEND_TIMEOUT)
                except Exception:  # a dead broker must not fail a job; pages re-read the DB on reconnect
                    kinds = sorted({str(m["event"].get("type")) for _, m in batch})
                    logger.warning("could not send %d event(s) (%s)", len(batch), ", ".join(kinds), exc_info=True)
            with self._guard:
                if not self.pending:
                    self.idle.set()

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
    _get_sender().put(groups, {"type": CHANNEL_MESSAGE_TYPE, "event": event})


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
