"""The job status machine: the only code that writes ``Job.status``."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from generation.models import ALLOWED_TRANSITIONS, TERMINAL_STATUSES, Job, JobLogLine, JobStatus, LogLevel
from tower.core.errors import DomainError


class JobError(DomainError):
    """A job operation cannot be done as asked."""


class IllegalTransition(JobError):
    def __init__(self, job_id: int, current: str, target: str) -> None:
        super().__init__(f"job {job_id} cannot go from {current} to {target}")
        self.current = current
        self.target = target


_TIMESTAMP_FOR: dict[str, str] = {
    JobStatus.SUBMITTED: "submitted_at",
    JobStatus.RUNNING: "started_at",
}


def job_transition(*, job_id: int, to: str, expect: str | set[str] | None = None, **fields: Any) -> Job | None:
    """Move a job to ``to`` with a conditional update, and set ``fields`` in the same write.

    Returns the updated job, or ``None`` when the job was not in ``expect`` (someone else moved it
    first: a re-delivered task, a cancel racing a completion). Raises :class:`IllegalTransition`
    when the status machine forbids the move from the job's current status.
    """
    if not job_move(job_id=job_id, to=to, expect=expect, **fields):
        return None
    # The graph is the largest column and no caller of a transition reads it: leave it deferred.
    return Job.objects.defer("graph").get(pk=job_id)


LogEntry = tuple[str, str, dict[str, Any] | None]  # (level, message, data)

# Each status → the statuses a job may move to it from (every status is listed, even if none).
_SOURCES: dict[str, frozenset[str]] = {
    to: frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if to in targets) for to in JobStatus.values
}


def job_move(
    *,
    job_id: int,
    to: str,
    expect: str | set[str] | None = None,
    log: list[LogEntry] | tuple[LogEntry, ...] = (),
    **fields: Any,
) -> bool:
    """:func:`job_transition` without reading the job back: True when the job moved.

    The engine's hot path knows what it needs of the job already; ``log`` adds further lines to
    the job's log in the same insert as the status line.
    """
    allowed_from = _SOURCES.get(to)
    if allowed_from is None:
        raise JobError(f"unknown status {to!r}")
    sources: frozenset[str] | set[str]
    if expect is None:
        sources = allowed_from
    else:
        sources = {expect} if isinstance(expect, str) else set(expect)
        illegal = sources - allowed_from
        if illegal:
            raise IllegalTransition(job_id, ", ".join(sorted(illegal)), to)
    now = timezone.now()
    values: dict[str, Any] = {"status": to, **fields}
    stamp = _TIMESTAMP_FOR.get(to)
    if stamp and stamp not in fields:
        values[stamp] = now
    if to in TERMINAL_STATUSES:
        values.setdefault("finished_at", now)
        values.setdefault("eta_seconds", None)
        values.setdefault("queue_position", None)
        if to == JobStatus.SUCCEEDED:
            values.setdefault("progress", 1.0)
    lines = [(LogLevel.INFO, f"status → {to}", None), *log]
    # No savepoint inside a caller's transaction (two statements saved per move); nothing in the
    # block raises on purpose, so the caller's transaction is never left marked for rollback.
    with transaction.atomic(savepoint=False):
        updated = Job.objects.filter(pk=job_id, status__in=sources).update(**values)
        if updated:
            JobLogLine.objects.bulk_create(
                [JobLogLine(job_id=job_id, level=level, message=message, data=data) for level, message, data in lines]
            )
    if updated:
        return True
    current = Job.objects.filter(pk=job_id).values_list("status", flat=True).first()
    if current is None:
        raise JobError(f"job {job_id} does not exist")
    if expect is None:
        raise IllegalTransition(job_id, current, to)
    return False


def job_log(*, job_id: int, message: str, level: str = LogLevel.INFO, data: dict[str, Any] | None = None) -> None:
    JobLogLine.objects.create(job_id=job_id, level=level, message=message, data=data)
