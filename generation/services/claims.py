"""Taking work and holding it: claim a queued job for a backend with room, adopt an orphan, keep
the heartbeat, hand a job back to the queue.

Every status change goes through :func:`generation.services.jobs.job_move` with the statuses it
expects, so a cancel that lands first simply wins and the engine's write is a no-op.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.fields.json import KT
from django.utils import timezone

from generation.models import Backend, Job, JobStatus, LogLevel
from generation.pool import BackendState, choose_backend
from generation.services.completion import job_fail
from generation.services.jobs import job_log, job_move, job_transition
from generation.services.reads import (
    LIVE,
    backend_object_info,
    backend_prompts,
    backend_states,
    object_info_fetched,
)
from generation.workflow import Problem, preflight, required_nodes


@dataclass(frozen=True)
class Claim:
    job_id: int
    project_id: int
    user_id: int | None
    backend_id: int
    backend_name: str
    backend_url: str
    prompt_id: str
    client_id: str
    graph: dict[str, Any]
    inputs: list[dict[str, str]] = field(default_factory=list)
    resume: bool = False
    fresh: bool = False  # bypass ComfyUI's cache (reproductions)
    # The job as claimed and its template's slug, so the completion need not read the row again.
    # Only fields nothing but the completion writes while the job is live.
    known: tuple[Job, str | None] | None = field(default=None, compare=False, repr=False)


def new_client_id() -> str:
    return f"tower-{uuid.uuid4().hex[:12]}"


def _claim(
    job: Job,
    backend: Backend | BackendState,
    *,
    prompt_id: str,
    client_id: str,
    known: tuple[Job, str | None] | None = None,
    **flags: bool,
) -> Claim:
    return Claim(
        job_id=job.pk,
        project_id=job.project_id,
        user_id=job.created_by_id,
        backend_id=backend.pk if isinstance(backend, Backend) else backend.id,
        backend_name=backend.name,
        backend_url=backend.url,
        prompt_id=prompt_id,
        client_id=client_id,
        graph=job.graph or {},
        inputs=list((job.params or {}).get("inputs") or []),
        known=known,
        **flags,
    )


# What a claim reads of a job (not its results or log): what it decides with, and what the
# completion will need (``Claim.known``).
_CLAIM_FIELDS = (
    "project",
    "created_by",
    "graph",
    "params",
    "reproduce_of",
    "error_message",
    "status",
    "attempts",
    "prompt",
    "negative_prompt",
    "seed",
    "mode",
    "timings",
    "template",
    "kind",  # a character sheet's outputs record its layout
)


def job_claim(*, job_id: int, worker: str, client_id: str | None = None, note_waiting: bool = True) -> Claim | None:
    """Take a queued job for a backend with room, or leave it queued (returns None).

    The backend is chosen from a lock-free read, and the queued → submitted move happens in a
    transaction that first re-counts the chosen backend's prompts under its row lock, so two
    workers never put more than ``max_in_flight`` prompts on one backend. A job whose graph fails
    pre-flight against the chosen backend's ``/object_info`` fails here, before any GPU time.
    ``client_id`` is the WebSocket identity the prompt is submitted under (a session's shared one);
    ``note_waiting`` records on the job why it must wait when no backend can take it.
    """
    queued = _queued_row(job_id)
    if queued is None:
        return None
    return _claim_checked(*queued, worker=worker, client_id=client_id, note_waiting=note_waiting)


def _queued_row(job_id: int, *, lock: bool = False) -> tuple[Job, str | None] | None:
    """The queued job's claim fields and its template's slug (``lock``: row-locked on
    PostgreSQL, inside the caller's transaction); None when it is not queued."""
    jobs = Job.objects.all()
    if lock:
        # ``of``: the template is joined on a nullable key, which PostgreSQL will not lock.
        jobs = jobs.select_for_update(of=("self",))
    job = (
        jobs.filter(pk=job_id, status=JobStatus.QUEUED)
        .annotate(template_slug=F("template__slug"))
        .only(*_CLAIM_FIELDS)
        .first()
    )
    if job is None:
        return None
    return job, job.template_slug


def _preflight_message(problems: list[Problem]) -> str:
    lines = [p.message for p in problems[:8]]
    if len(problems) > 8:
        lines.append(f"… and {len(problems) - 8} more")
    return "; ".join(lines)


@dataclass(frozen=True)
class _Decision:
    backend: BackendState
    reason: str
    checkpoint: str


def _decide(job: Job, states: list[BackendState], *, note_waiting: bool) -> _Decision | None:
    """The backend for ``job`` among ``states``; None when it must wait (noted on the job when
    ``note_waiting``) or failed pre-flight (the job is failed)."""
    graph = job.graph or {}
    checkpoint = str((job.params or {}).get("checkpoint") or "")
    choice = choose_backend(states, required_nodes=required_nodes(graph), checkpoint=checkpoint)
    if choice.backend_id is None:
        if note_waiting and job.error_message != f"waiting: {choice.reason}":
            with transaction.atomic():
                Job.objects.filter(pk=job.pk).update(error_message=f"waiting: {choice.reason}")
                job_log(job_id=job.pk, message=f"waiting: {choice.reason}", level=LogLevel.WARNING)
        return None
    backend = next(s for s in states if s.id == choice.backend_id)
    info = backend_object_info(backend.id, fetched_at=object_info_fetched.get(backend.id))
    problems = preflight(graph, info) if info else []
    if problems:
        message = f"pre-flight on {backend.name}: {_preflight_message(problems)}"
        job_fail(
            job_id=job.pk,
            error_type="preflight",
            message=message,
            node=f"#{problems[0].node_id} {problems[0].class_type}".strip() if problems[0].node_id else "",
            details={"problems": [p.__dict__ for p in problems[:50]]},
            expect={JobStatus.QUEUED},
        )
        return None
    return _Decision(backend, choice.reason, checkpoint)


def _claim_checked(
    job: Job,
    slug: str | None,
    *,
    worker: str,
    client_id: str | None,
    note_waiting: bool,
    ended: Collection[int] = (),
    states: list[BackendState] | None = None,
) -> Claim | None:
    """Claim ``job`` (read without locks) for the backend a lock-free read of the pool chooses.

    On SQLite a write transaction holds the database's one write lock from its BEGIN (every
    other worker's claim and completion waits, through SQLite's busy handler that sleeps 1, 2,
    5, 10 ms… between tries), so the decision (the pool's state, the queued job's fields and
    graph, pre-flight) is made outside it; the transaction only re-counts the chosen backend's
    prompts under its row lock and moves the job. When that backend filled up meanwhile, the
    claim is decided again with every backend locked, as it was before.
    """
    if states is None:
        states = backend_states(ended=ended)
    decision = _decide(job, states, note_waiting=note_waiting)
    if decision is None:
        return None
    backend = decision.backend
    # The statements are built before BEGIN (resolving a filter is a good part of an ORM
    # statement's cost): inside, the write lock is held only to compile and run them.
    lock = Backend.objects.select_for_update().filter(pk=backend.id).values_list("pk", flat=True)
    in_flight = backend_prompts(backend.id, ended=ended)
    mark = _ended_query(ended)
    with transaction.atomic():
        # Backends first, then the job: the order every claim takes its locks in. SQLite has no row
        # locks: its BEGIN IMMEDIATE took the database's write lock already.
        if connection.features.has_select_for_update:
            list(lock)
        if mark is not None:
            mark.update(prompt_done_at=timezone.now())
        if in_flight.count() < backend.max_in_flight:
            return _take(job, slug, decision, worker=worker, client_id=client_id)
        states = backend_states(lock=True, ended=ended)
        locked = _queued_row(job.pk, lock=True)
        if locked is None:
            return None
        job, slug = locked
        decision = _decide(job, states, note_waiting=note_waiting)
        return None if decision is None else _take(job, slug, decision, worker=worker, client_id=client_id)


def _ended_query(ended: Collection[int]) -> QuerySet[Job] | None:
    """These live jobs, if their prompts are not yet marked finished (see :func:`_mark_ended`)."""
    if not ended:
        return None
    return Job.objects.filter(pk__in=list(ended), status__in=LIVE, prompt_done_at__isnull=True)


def _mark_ended(ended: Collection[int]) -> None:
    """Record that these live jobs' prompts have finished on their servers (``prompt_done_at``):
    they no longer count as in flight for any worker's claim."""
    query = _ended_query(ended)
    if query is not None:
        query.update(prompt_done_at=timezone.now())


def _take(job: Job, slug: str | None, decision: _Decision, *, worker: str, client_id: str | None) -> Claim | None:
    """queued → submitted on the decided backend, inside the caller's transaction; None when
    another worker took the job first."""
    backend = decision.backend
    prompt_id = str(uuid.uuid4())
    client_id = client_id or new_client_id()
    now = timezone.now()
    attempts = job.attempts
    moved = job_move(
        job_id=job.pk,
        to=JobStatus.SUBMITTED,
        expect=JobStatus.QUEUED,
        log=[(LogLevel.INFO, f"sent to {backend.name} ({decision.reason}), attempt {attempts + 1}", None)],
        backend_id=backend.id,
        prompt_id=prompt_id,
        client_id=client_id,
        worker=worker,
        heartbeat_at=now,
        submitted_at=now,
        attempts=attempts + 1,
        error_message="",
        queue_position=None,
        prompt_done_at=None,
    )
    if not moved:
        return None
    # The pool's tie-break ("longest without work") needs a second's precision, not a write per claim.
    assigned: dict[str, Any] = {}
    if backend.last_used < now.timestamp() - 1.0:
        assigned["last_assigned_at"] = now
    checkpoint = decision.checkpoint
    if checkpoint and backend.last_checkpoint != checkpoint:
        assigned["last_checkpoint"] = checkpoint
    if assigned:
        Backend.objects.filter(pk=backend.id).update(**assigned)
    return _claim(
        job,
        backend,
        prompt_id=prompt_id,
        client_id=client_id,
        known=(job, slug),
        fresh=job.reproduce_of_id is not None,
    )


def _queued_checkpoints(limit: int) -> list[tuple[int, str | None]]:
    """(id, checkpoint) of the oldest queued jobs that have a graph."""
    rows = (
        Job.objects.filter(status=JobStatus.QUEUED, graph__isnull=False)
        .order_by("created_at", "pk")
        .annotate(checkpoint=KT("params__checkpoint"))
        .values_list("pk", "checkpoint")[:limit]
    )
    return [(pk, checkpoint if isinstance(checkpoint, str) else None) for pk, checkpoint in rows]


def job_claim_next(*, worker: str, client_id: str, ended: Collection[int] = (), look_at: int = 32) -> Claim | None:
    """Claim a queued job some backend has room for (a session taking more work). ``ended``: the
    caller's live jobs whose prompts have finished on their servers; they are marked so (their
    ``prompt_done_at``), and no longer count as in flight for this claim or any other.

    Checkpoint affinity applied to the order in which work is taken: first the oldest job whose
    checkpoint a free backend has loaded, then one whose checkpoint no busy backend holds (a
    free GPU loads something new rather than a second copy of a model another GPU is running),
    then the oldest of the rest (an idle GPU still beats waiting). The order is read without
    locks; each candidate is claimed as :func:`job_claim` does (its backend's room re-counted
    under that backend's lock), so a job another worker took first is simply skipped.
    """
    states = backend_states(ended=ended)
    healthy = [s for s in states if s.healthy]
    free = [s for s in healthy if s.in_flight < s.max_in_flight]
    rows = _queued_checkpoints(look_at) if free else []
    if not rows:
        if ended:
            with transaction.atomic():
                _mark_ended(ended)
        return None
    on_free = {s.last_checkpoint for s in free if s.last_checkpoint}
    on_busy = {s.last_checkpoint for s in healthy if s.last_checkpoint and s not in free}

    def tier(checkpoint: str | None) -> int:
        if checkpoint and checkpoint in on_free:
            return 0
        return 2 if checkpoint and checkpoint in on_busy else 1

    ordered = [pk for *_, pk in sorted((tier(ckpt), i, pk) for i, (pk, ckpt) in enumerate(rows))]
    for job_id in ordered[:4]:
        queued = _queued_row(job_id)
        if queued is None:
            continue
        claim = _claim_checked(
            *queued, worker=worker, client_id=client_id, note_waiting=False, ended=ended, states=states
        )
        if claim is not None:
            return claim
    if ended:  # no candidate reached a transaction that marks them: other claims still count them
        with transaction.atomic():
            _mark_ended(ended)
    return None


def job_claim_live(*, job_id: int, worker: str, stale_before: Any = None) -> Claim | None:
    """Adopt a submitted/running job whose owner died (reconcile), to follow it without resubmitting."""
    query = Job.objects.filter(pk=job_id, status__in=LIVE)
    if stale_before is not None:
        query = query.filter(Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True))
    with transaction.atomic():
        job = query.select_for_update(of=("self",)).select_related("backend").first()
        if job is None or job.backend is None:
            return None
        updated = Job.objects.filter(pk=job.pk, worker=job.worker, status=job.status).update(
            worker=worker, heartbeat_at=timezone.now()
        )
        if not updated:
            return None
        job_log(job_id=job.pk, message=f"adopted by {worker} after its worker {job.worker or '?'} went away")
    return _claim(
        job,
        job.backend,
        prompt_id=job.prompt_id,
        client_id=job.client_id or new_client_id(),
        resume=True,
    )


def job_heartbeat(*, job_id: int, worker: str) -> bool:
    """Refresh the heartbeat; False when the job is no longer ours (cancelled, or adopted)."""
    return bool(Job.objects.filter(pk=job_id, status__in=LIVE, worker=worker).update(heartbeat_at=timezone.now()))


def job_record_prompt_id(*, job_id: int, prompt_id: str, backend_id: int, honoured: bool | None) -> None:
    """An older server ignored our prompt_id and chose its own: remember the server's."""
    Job.objects.filter(pk=job_id).update(prompt_id=prompt_id)
    if honoured is not None:
        Backend.objects.filter(pk=backend_id).update(supports_prompt_id=honoured)


def backend_mark_down(*, backend_id: int, error: str) -> None:
    Backend.objects.filter(pk=backend_id).update(healthy=False, last_error=error[:2000])


def job_requeue(*, job_id: int, reason: str, count_attempt: bool = True) -> Job | None:
    """Back to queued after a lost prompt or an unreachable backend; fail once attempts run out."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in LIVE:
            return None
        if count_attempt and job.attempts >= job.max_attempts:
            return job_fail(
                job_id=job_id,
                error_type="attempts_exhausted",
                message=f"{reason}; gave up after {job.attempts} attempts",
                expect={job.status},
            )
        moved = job_transition(
            job_id=job_id,
            to=JobStatus.QUEUED,
            expect=job.status,
            backend=None,
            prompt_id="",
            worker="",
            progress=0.0,
            current_node="",
            error_message=f"waiting: {reason}",
            attempts=job.attempts if count_attempt else max(0, job.attempts - 1),
        )
        job_log(job_id=job_id, message=f"requeued: {reason}", level=LogLevel.WARNING)
    return moved
