"""Writes the engine makes while driving a job: claim, progress, outputs, success, failure, requeue.

Every status change goes through :func:`generation.services.jobs.job_transition` with the
statuses it expects, so a cancel that lands first simply wins and the engine's write is a no-op.
Events follow the commit.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.module_loading import import_string

from generation import events
from generation.media import MediaError, png_add_text, probe
from generation.models import (
    LIVE_STATUSES,
    Asset,
    Backend,
    BackendObjectInfo,
    Job,
    JobKind,
    JobLogLine,
    JobStatus,
    LogLevel,
    WorkflowTemplate,
)
from generation.pool import BackendState, choose_backend
from generation.services.jobs import job_log, job_move, job_transition
from generation.workflow import preflight, required_nodes, sheet_layout
from tower.rows import insert_rows

LIVE = [JobStatus.SUBMITTED, JobStatus.RUNNING]
logger = logging.getLogger(__name__)


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
    # What the completion needs of the job (its fields as claimed, and its template's slug), read
    # by the claim's own statement so the completion does not read the row again. Only fields
    # nothing but the completion writes while the job is live.
    known: tuple[Job, str | None] | None = field(default=None, compare=False, repr=False)


_STATE_FIELDS = (
    "id",
    "name",
    "url",
    "enabled",
    "healthy",
    "max_in_flight",
    "vram_hold_threshold",
    "last_checkpoint",
    "last_assigned_at",
    "last_seen_at",
    "object_info_fetched_at",
)


def _states_sql(lock: bool, ended: int = 0) -> str:
    """Every enabled backend and its prompts in flight, as one statement built from the models'
    metadata (read on every claim: the ORM took four times longer to build it than to run it).
    ``ended`` placeholders follow for ids of live jobs whose prompts are no longer in flight."""
    db = transaction.get_connection()
    quote = db.ops.quote_name
    backend, job = Backend._meta, Job._meta
    columns = ", ".join(f"b.{quote(backend.get_field(n).column)}" for n in _STATE_FIELDS)
    job_backend, job_status = quote(job.get_field("backend").column), quote(job.get_field("status").column)
    table, pk = quote(job.db_table), quote(backend.pk.column)
    # A live job whose prompt the server has finished (its outputs being stored) is not in flight.
    done = quote(job.get_field("prompt_done_at").column)
    not_ended = f" AND j.{done} IS NULL"
    if ended:
        not_ended += f" AND j.{quote(job.pk.column)} NOT IN ({', '.join(['%s'] * ended)})"
    in_flight = (
        f"(SELECT COUNT(*) FROM {table} j WHERE j.{job_backend} = b.{pk} AND j.{job_status} IN (%s, %s){not_ended})"  # noqa: S608
    )
    enabled = quote(backend.get_field("enabled").column)
    sql = f"SELECT {columns}, {in_flight} FROM {quote(backend.db_table)} b WHERE b.{enabled} = %s"  # noqa: S608
    if lock and db.features.has_select_for_update:
        sql += " FOR UPDATE"
    return sql


# When each backend's /object_info was last stored, as the latest backend_states() read it.
_object_info_fetched: dict[int, datetime | None] = {}


def _aware(value: Any) -> datetime | None:
    """A datetime column as the ORM would return it (SQLite hands back naive UTC, or text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = parse_datetime(value)
    if value is not None and timezone.is_naive(value):
        value = timezone.make_aware(value, UTC)
    return value


def backend_states(*, lock: bool = False, ended: Collection[int] = ()) -> list[BackendState]:
    """Every enabled backend with its prompts in flight: live jobs but those whose prompts the
    server has finished (``prompt_done_at``, or in ``ended``), their outputs being stored.

    ``lock`` takes the backends' row locks (PostgreSQL) for the rest of the transaction, so two
    workers claiming at once never put more than ``max_in_flight`` prompts on one backend. SQLite
    runs every write transaction IMMEDIATE: the database lock already serializes claims.

    A backend's node classes (hundreds of names) and VRAM figures change only when the health
    poll stores them, which also moves its ``last_seen_at`` / ``object_info_fetched_at``: they
    are decoded once per process per poll, not on every claim.
    """
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_states_sql(lock, len(ended)), [JobStatus.SUBMITTED, JobStatus.RUNNING, *ended, True])
        rows = cursor.fetchall()
    states = []
    for row in rows:
        (pk, name, url, enabled, healthy, max_in_flight, hold, checkpoint, assigned, seen, info_at, busy) = row
        used, node_classes = _capabilities(pk, seen, info_at)
        _object_info_fetched[pk] = _aware(info_at)
        assigned = _aware(assigned)
        states.append(
            BackendState(
                id=pk,
                name=name,
                url=url,
                enabled=bool(enabled),
                healthy=bool(healthy),
                in_flight=int(busy),
                max_in_flight=max_in_flight,
                vram_used_fraction=used,
                vram_hold=hold,
                node_classes=node_classes,
                last_checkpoint=checkpoint,
                last_used=assigned.timestamp() if assigned else 0.0,
            )
        )
    return states


_capability_cache: dict[int, tuple[tuple[Any, Any], tuple[float | None, frozenset[str]]]] = {}


def _capabilities(backend_id: int, seen: Any, info_at: Any) -> tuple[float | None, frozenset[str]]:
    """(fraction of VRAM in use, node classes) of a backend, as of its last poll."""
    version = (seen, info_at)
    cached = _capability_cache.get(backend_id)
    if cached is not None and cached[0] == version and seen is not None:
        return cached[1]
    stats, names = Backend.objects.filter(pk=backend_id).values_list("stats", "node_classes").get()
    devices = (stats or {}).get("devices") or []
    total = sum(int(d.get("vram_total") or 0) for d in devices)
    free = sum(int(d.get("vram_free") or 0) for d in devices)
    value = ((total - free) / total if total > 0 else None, frozenset(names or []))
    _capability_cache[backend_id] = (version, value)
    return value


_object_infos: dict[int, tuple[tuple[str, Any], dict[str, Any]]] = {}


def backend_object_info(backend_id: int, *, fetched_at: datetime | None = None) -> dict[str, Any] | None:
    """The backend's cached /object_info, parsed once per process and version.

    It is hundreds of kilobytes of JSON; decoding it on every claim was a tenth of a job's CPU
    time in the worker. The digest and fetch time tell when the stored copy changed. A claim
    passes ``fetched_at``, the backend row's ``object_info_fetched_at`` it has just read (the
    health poll writes both times together): when the parsed copy is of that fetch, no query.
    """
    cached = _object_infos.get(backend_id)
    if fetched_at is not None and cached is not None and cached[0][1] == fetched_at:
        return cached[1]
    version = BackendObjectInfo.objects.filter(backend_id=backend_id).values_list("digest", "fetched_at").first()
    if version is None:
        _object_infos.pop(backend_id, None)
        return None
    if cached is not None and cached[0] == version:
        return cached[1]
    data = BackendObjectInfo.objects.filter(backend_id=backend_id).values_list("data", flat=True).first()
    if data is None:
        return None
    _object_infos[backend_id] = (version, data)
    return data


def _preflight_message(problems: list) -> str:
    lines = [p.message for p in problems[:8]]
    if len(problems) > 8:
        lines.append(f"… and {len(problems) - 8} more")
    return "; ".join(lines)


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


def new_client_id() -> str:
    return f"tower-{uuid.uuid4().hex[:12]}"


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

    The backend choice and the queued → submitted update happen in one transaction, so two
    workers never put more than ``max_in_flight`` prompts on one backend. A job whose graph fails
    pre-flight against the chosen backend's ``/object_info`` fails here, before any GPU time.
    ``client_id`` is the WebSocket identity the prompt is submitted under (a session's shared one);
    ``note_waiting`` records on the job why it must wait when no backend can take it.
    """
    with transaction.atomic():
        # Backends first, then the job: the order every claim takes its locks in.
        states = backend_states(lock=True)
        locked = _lock_queued(job_id)
        if locked is None:
            return None
        return _claim_locked(*locked, states, worker=worker, client_id=client_id, note_waiting=note_waiting)


def _lock_queued(job_id: int) -> tuple[Job, str | None] | None:
    """The queued job's claim fields, row-locked (PostgreSQL), as an unsaved Job, and its
    template's slug; None when it is not queued. One statement from the models' metadata, JSON
    decoded by the fields themselves."""
    db = transaction.get_connection()
    quote = db.ops.quote_name
    fields = [Job._meta.pk, *(Job._meta.get_field(name) for name in _CLAIM_FIELDS)]
    columns = ", ".join(quote(f.column) for f in fields)
    table, pk, status = (
        quote(Job._meta.db_table),
        quote(Job._meta.pk.column),
        quote(Job._meta.get_field("status").column),
    )
    template = quote(Job._meta.get_field("template").column)
    slug = (
        f"(SELECT t.{quote(WorkflowTemplate._meta.get_field('slug').column)} "  # noqa: S608
        f"FROM {quote(WorkflowTemplate._meta.db_table)} t "
        f"WHERE t.{quote(WorkflowTemplate._meta.pk.column)} = {table}.{template})"
    )
    sql = f"SELECT {columns}, {slug} FROM {table} WHERE {pk} = %s AND {status} = %s"  # noqa: S608
    if db.features.has_select_for_update:
        sql += " FOR UPDATE"
    with db.cursor() as cursor:
        cursor.execute(sql, [job_id, JobStatus.QUEUED])
        row = cursor.fetchone()
    if row is None:
        return None
    values = {}
    for column, value in zip(fields, row, strict=False):
        if isinstance(column, models.JSONField):
            value = column.from_db_value(value, None, db)
        values[column.attname] = value
    return Job(**values), row[-1]


def _claim_locked(
    job: Job,
    slug: str | None,
    states: list[BackendState],
    *,
    worker: str,
    client_id: str | None,
    note_waiting: bool,
) -> Claim | None:
    """The claim itself, inside the caller's transaction with the backends and the job locked."""
    graph = job.graph or {}
    checkpoint = str((job.params or {}).get("checkpoint") or "")
    choice = choose_backend(states, required_nodes=required_nodes(graph), checkpoint=checkpoint)
    if choice.backend_id is None:
        if note_waiting and job.error_message != f"waiting: {choice.reason}":
            Job.objects.filter(pk=job.pk).update(error_message=f"waiting: {choice.reason}")
            job_log(job_id=job.pk, message=f"waiting: {choice.reason}", level=LogLevel.WARNING)
        return None
    backend = next(s for s in states if s.id == choice.backend_id)
    info = backend_object_info(backend.id, fetched_at=_object_info_fetched.get(backend.id))
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
    prompt_id = str(uuid.uuid4())
    client_id = client_id or new_client_id()
    now = timezone.now()
    attempts = job.attempts
    moved = job_move(
        job_id=job.pk,
        to=JobStatus.SUBMITTED,
        expect=JobStatus.QUEUED,
        log=[(LogLevel.INFO, f"sent to {backend.name} ({choice.reason}), attempt {attempts + 1}", None)],
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
    """(id, checkpoint) of the oldest queued jobs that have a graph: one statement per claim."""
    db = transaction.get_connection()
    quote = db.ops.quote_name
    meta = Job._meta
    table, pk = quote(meta.db_table), quote(meta.pk.column)
    params, status = quote(meta.get_field("params").column), quote(meta.get_field("status").column)
    graph, created = quote(meta.get_field("graph").column), quote(meta.get_field("created_at").column)
    if db.vendor == "postgresql":
        checkpoint = f"({params} ->> 'checkpoint')"
    else:  # SQLite's JSON1 (what Django's own key lookups use there)
        checkpoint = f"json_extract({params}, '$.checkpoint')"
    where = f"{status} = %s AND {graph} IS NOT NULL"
    sql = f"SELECT {pk}, {checkpoint} FROM {table} WHERE {where} ORDER BY {created}, {pk} LIMIT %s"  # noqa: S608
    with db.cursor() as cursor:
        cursor.execute(sql, [JobStatus.QUEUED, limit])
        return [(pk, value if isinstance(value, str) else None) for pk, value in cursor.fetchall()]


def job_claim_next(*, worker: str, client_id: str, ended: Collection[int] = (), look_at: int = 32) -> Claim | None:
    """Claim a queued job some backend has room for (a session taking more work). ``ended``: the
    caller's live jobs whose prompts have finished on their servers; they are marked so (their
    ``prompt_done_at``), and no longer count as in flight for this claim or any other.

    Checkpoint affinity applied to the order in which work is taken: first the oldest job whose
    checkpoint a free backend has loaded, then one whose checkpoint no busy backend holds (a
    free GPU loads something new rather than a second copy of a model another GPU is running),
    then the oldest of the rest (an idle GPU still beats waiting). One transaction: the backend
    states read under their locks are the ones the claim decides with.
    """
    with transaction.atomic():
        states = backend_states(lock=True, ended=ended)  # backends locked first, as in every claim
        if ended:
            _mark_prompts_done(ended)
        healthy = [s for s in states if s.healthy]
        free = [s for s in healthy if s.in_flight < s.max_in_flight]
        if not free:
            return None
        on_free = {s.last_checkpoint for s in free if s.last_checkpoint}
        on_busy = {s.last_checkpoint for s in healthy if s.last_checkpoint and s not in free}
        rows = _queued_checkpoints(look_at)

        def tier(checkpoint: str | None) -> int:
            if checkpoint and checkpoint in on_free:
                return 0
            return 2 if checkpoint and checkpoint in on_busy else 1

        ordered = [pk for *_, pk in sorted((tier(ckpt), i, pk) for i, (pk, ckpt) in enumerate(rows))]
        for job_id in ordered[:4]:
            locked = _lock_queued(job_id)
            if locked is None:
                continue
            claim = _claim_locked(*locked, states, worker=worker, client_id=client_id, note_waiting=False)
            if claim is not None:
                return claim
    return None


def _mark_prompts_done(job_ids: Collection[int]) -> None:
    """Stamp ``prompt_done_at`` on those of the live jobs whose stamp is not set yet: one statement
    from the models' metadata (through the ORM, building it was a third of a claim's CPU time)."""
    db = transaction.get_connection()
    quote = db.ops.quote_name
    meta = Job._meta
    field = meta.get_field("prompt_done_at")
    done, status = quote(field.column), quote(meta.get_field("status").column)
    ids = ", ".join(["%s"] * len(job_ids))
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {done} = %s "  # noqa: S608
        f"WHERE {quote(meta.pk.column)} IN ({ids}) AND {status} IN (%s, %s) AND {done} IS NULL"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, [field.get_db_prep_save(timezone.now(), db), *job_ids, *LIVE])


def backend_mark_down(*, backend_id: int, error: str) -> None:
    Backend.objects.filter(pk=backend_id).update(healthy=False, last_error=error[:2000])


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


def job_record_prompt_id(*, job_id: int, prompt_id: str, backend_id: int, honoured: bool | None) -> None:
    """An older server ignored our prompt_id and chose its own: remember the server's."""
    Job.objects.filter(pk=job_id).update(prompt_id=prompt_id)
    if honoured is not None:
        Backend.objects.filter(pk=backend_id).update(supports_prompt_id=honoured)


def job_started(*, job_id: int, project_id: int | None = None, started_at: datetime | None = None) -> None:
    """submitted → running (ComfyUI began executing the prompt, at ``started_at``); a progress
    event at 0."""
    stamp = {"started_at": started_at} if started_at is not None else {}
    if not job_move(job_id=job_id, to=JobStatus.RUNNING, expect=JobStatus.SUBMITTED, **stamp):
        return
    if project_id is None:
        project_id = Job.objects.filter(pk=job_id).values_list("project_id", flat=True).get()
    events.job_event("progress", job_id=job_id, project_id=project_id, value=0, max=1, node=None)


def job_progress(
    *,
    job_id: int,
    project_id: int,
    fraction: float,
    node: str,
    eta_seconds: float | None,
    worker: str,
    preview: str | None = None,
) -> bool:
    """Store live progress (also the heartbeat); False when the job is no longer ours to drive.

    ``preview`` is the media URL of the job's latest live frame (with a cache-busting counter).
    """
    updated = Job.objects.filter(pk=job_id, status__in=LIVE, worker=worker).update(
        progress=round(fraction, 4), current_node=node[:200], eta_seconds=eta_seconds, heartbeat_at=timezone.now()
    )
    if updated and preview:
        # The caller already limits progress writes to a few a second; every one carries the frame.
        events.job_event(
            "progress",
            job_id=job_id,
            project_id=project_id,
            value=round(fraction, 4),
            max=1.0,
            node=node,
            eta_seconds=eta_seconds,
            preview=preview,
        )
    elif updated:
        events.progress_event(
            job_id=job_id,
            project_id=project_id,
            value=round(fraction, 4),
            maximum=1.0,
            node=node,
            eta_seconds=eta_seconds,
        )
    return bool(updated)


def job_heartbeat(*, job_id: int, worker: str) -> bool:
    return bool(Job.objects.filter(pk=job_id, status__in=LIVE, worker=worker).update(heartbeat_at=timezone.now()))


def job_status(*, job_id: int) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


def job_fail(
    *,
    job_id: int,
    error_type: str,
    message: str,
    node: str = "",
    details: dict[str, Any] | None = None,
    expect: set[str] | None = None,
) -> Job | None:
    with transaction.atomic():
        job = job_transition(
            job_id=job_id,
            to=JobStatus.FAILED,
            expect=expect or {JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING},
            error_type=error_type[:200],
            error_message=message,
            error_node=(node or "")[:200],
            error_details=details,
            worker="",
        )
        if job is None:
            return None
        job_log(job_id=job_id, message=f"failed: {message}", level=LogLevel.ERROR, data=details)
        events.job_event(
            "job_failed",
            job_id=job.pk,
            project_id=job.project_id,
            user_id=job.created_by_id,
            error={"type": job.error_type, "node": job.error_node, "message": job.error_message},
        )
        transaction.on_commit(lambda: announce_job_failed(job_id))
    return job


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


@dataclass(frozen=True)
class FetchedOutput:
    node_id: str
    filename: str
    data: bytes


def job_complete(
    *,
    job_id: int,
    outputs: list[FetchedOutput],
    node_seconds: dict[str, float] | None = None,
    graph: dict[str, Any] | None = None,
    started_at: datetime | None = None,
    known: tuple[Job, str | None] | None = None,
) -> bool:
    """Store the outputs as Assets and mark the job succeeded; False when the job had left the
    engine meanwhile (cancelled: its outputs are kept all the same).

    The files are written first, then their rows and the job's success in one transaction (the
    files are removed again if it fails). Each output is written under a generated name. PNGs
    get the submitted graph as ComfyUI's ``prompt`` chunk (so an output dragged back into ComfyUI
    restores its graph) and Tower's parameters as a ``tower`` chunk: deterministic, so a
    reproduction has the same sha256.
    Idempotent: a job that already has assets (a worker died after storing them) keeps those.
    ``graph`` is the submitted graph when the caller holds it (the claim), saving its read.
    ``node_seconds`` (per-node timings) join the job's timings in the same write, and so does
    ``started_at`` for a prompt that ended before the engine marked it running. ``known`` is the
    claim's copy of the job's fields and template slug (``Claim.known``), saving their read.
    """
    written: list[str] = []
    try:
        # Everything but the rows happens before the transaction: on SQLite a write transaction
        # holds the database's one write lock from its BEGIN, and every other worker's claim waits
        # behind it (bench/engine.py: a claim is on the path from one prompt's end to the next
        # one's start). Reading the job, probing, tagging, hashing and writing the files were
        # most of a completion's time.
        if known is not None and graph is not None:
            job, slug = known
        else:
            job, slug = _completion_row(job_id, with_graph=graph is None)
        if graph is None:
            graph = job.graph or {}
        log: list[tuple[str, str, dict | None]] = []
        prepared = _prepare_outputs(job, slug, graph, outputs, written, log)
        with transaction.atomic():
            if _outputs_stored(job_id):  # a worker died after storing them: those are kept
                assets = list(Asset.objects.filter(job_id=job_id).values("pk", "kind", "sha256"))
                transaction.on_commit(functools.partial(_delete_files, list(written)))
            else:
                insert_rows(prepared)
                assets = [{"pk": a.pk, "kind": a.kind, "sha256": a.sha256} for a in prepared]
            timings = {**(job.timings or {}), "nodes": node_seconds} if node_seconds else job.timings
            reproduced = None
            if job.reproduce_of_id:
                original = sorted(Asset.objects.filter(job_id=job.reproduce_of_id).values_list("sha256", flat=True))
                reproduced = original == sorted(a["sha256"] for a in assets) and bool(original)
                verdict = "identical outputs (sha256 equal)" if reproduced else "outputs differ from the original"
                log.append((LogLevel.INFO, f"reproduction of job {job.reproduce_of_id}: {verdict}", None))
            moved = job_move(
                job_id=job_id,
                to=JobStatus.SUCCEEDED,
                expect={JobStatus.SUBMITTED, JobStatus.RUNNING},
                log=log,
                worker="",
                current_node="",
                error_message="",
                timings=timings,
                **({"started_at": started_at} if started_at is not None else {}),
            )
            if not moved:
                lines = [JobLogLine(job_id=job_id, level=lv, message=m, data=d) for lv, m, d in log]
                JobLogLine.objects.bulk_create(lines)
                return False
            events.job_event(
                "job_complete",
                job_id=job_id,
                project_id=job.project_id,
                user_id=job.created_by_id,
                assets=[{"id": a["pk"], "kind": a["kind"], "sha256": a["sha256"]} for a in assets],
                reproduced=reproduced,
            )
            transaction.on_commit(lambda: announce_job_succeeded(job_id))
    except BaseException:
        _delete_files(written)
        raise
    return True


def _delete_files(names: list[str]) -> None:
    for name in names:
        Asset.file.field.storage.delete(name)


_COMPLETION_FIELDS = (
    "project",
    "created_by",
    "prompt",
    "negative_prompt",
    "seed",
    "mode",
    "params",
    "reproduce_of",
    "timings",
    "template",
    "kind",  # a character sheet's outputs record its layout
)


def _completion_row(job_id: int, *, with_graph: bool) -> tuple[Job, str | None]:
    """(the job's fields a completion needs as an unsaved Job, its template's slug): one statement
    built from the models' metadata."""
    db = transaction.get_connection()
    quote = db.ops.quote_name
    fields = [Job._meta.get_field(name) for name in _COMPLETION_FIELDS]
    if with_graph:
        fields.append(Job._meta.get_field("graph"))
    job_table, job_pk = quote(Job._meta.db_table), quote(Job._meta.pk.column)
    template_table = quote(WorkflowTemplate._meta.db_table)
    template_pk, slug = quote(WorkflowTemplate._meta.pk.column), quote(WorkflowTemplate._meta.get_field("slug").column)
    columns = ", ".join(f"j.{quote(f.column)}" for f in fields)
    template = quote(Job._meta.get_field("template").column)
    joined = f"{job_table} j LEFT OUTER JOIN {template_table} t ON t.{template_pk} = j.{template}"
    sql = f"SELECT {columns}, t.{slug} FROM {joined} WHERE j.{job_pk} = %s"  # noqa: S608
    with db.cursor() as cursor:
        cursor.execute(sql, [job_id])
        row = cursor.fetchone()
    if row is None:
        raise Job.DoesNotExist(f"job {job_id} does not exist")
    values: dict[str, Any] = {"id": job_id}
    for column, value in zip(fields, row, strict=False):
        if isinstance(column, models.JSONField):
            value = column.from_db_value(value, None, db)
        values[column.attname] = value
    return Job(**values), row[-1]


def _outputs_stored(job_id: int) -> bool:
    """Whether the job has Assets already (a worker died after storing them)."""
    db = transaction.get_connection()
    quote = db.ops.quote_name
    table, job = quote(Asset._meta.db_table), quote(Asset._meta.get_field("job").column)
    with db.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE {job} = %s LIMIT 1", [job_id])  # noqa: S608
        return cursor.fetchone() is not None


def _prepare_outputs(
    job: Job, slug: str | None, graph: dict[str, Any], outputs: list[FetchedOutput], written: list[str], log: list
) -> list[Asset]:
    """Write each output's file and build its (unsaved) Asset; ``written`` collects the file names
    (so the caller can remove them if the transaction fails), ``log`` the outputs skipped and why."""
    tower_meta = {
        "prompt": job.prompt,
        "negative": job.negative_prompt,
        "seed": job.seed,
        "mode": job.mode,
        "params": {k: v for k, v in (job.params or {}).items() if k != "inputs"},
        "template": slug,
    }
    poses = (job.params or {}).get("poses")
    if job.kind == JobKind.CHARACTER_SHEET and isinstance(poses, list) and poses:
        # How to split the sheet into its poses' panels (4 columns, as many rows as needed).
        tower_meta["sheet_layout"] = sheet_layout(len(poses))
    created: list[Asset] = []
    for index, out in enumerate(outputs):
        try:
            info = probe(out.data, filename=out.filename)
        except MediaError as exc:
            log.append((LogLevel.WARNING, f"output {out.filename} skipped: {exc}", None))
            continue
        data = out.data
        if info.extension == "png":
            data = png_add_text(data, {"prompt": graph, "tower": tower_meta})
        asset = Asset(
            project_id=job.project_id,
            job_id=job.pk,
            kind=info.kind,
            mime=info.mime,
            size_bytes=len(data),
            width=info.width,
            height=info.height,
            frames=info.frames,
            fps=info.fps,
            duration_seconds=info.duration_seconds,
            sha256=hashlib.sha256(data).hexdigest(),
            node_id=out.node_id,
            comfy_filename=out.filename[:300],
            metadata=tower_meta,
        )
        asset.file.save(f"job{job.pk}-{index + 1}.{info.extension}", ContentFile(data), save=False)
        written.append(asset.file.name)
        created.append(asset)
    return created


def announce_job_succeeded(job_id: int) -> None:
    """Call every function listed in ``settings.TOWER_ON_JOB_SUCCEEDED`` with the job's id.

    This is how apps above generation (quality scores and gates outputs) learn that a job
    finished, without generation importing them: the subscription is a visible list of dotted
    paths in settings, not a signal. Each is called in the engine's process after the success
    commits (the job is SUCCEEDED and its outputs exist), so it must be quick: enqueue work, never
    do it. A subscriber that raises is logged and does not stop the others; subscribers must be
    idempotent, and catch up on announcements they lost (quality's ``score_missing``).
    """
    for path in getattr(settings, "TOWER_ON_JOB_SUCCEEDED", ()):
        try:
            import_string(path)(job_id)
        except Exception:
            logger.warning("%s failed for job %s", path, job_id, exc_info=True)


def announce_job_failed(job_id: int) -> None:
    """Call every function listed in ``settings.TOWER_ON_JOB_FAILED`` with the job's id, after the
    failure commits: as :func:`announce_job_succeeded` (quick, idempotent, logged when they raise)."""
    for path in getattr(settings, "TOWER_ON_JOB_FAILED", ()):
        try:
            import_string(path)(job_id)
        except Exception:
            logger.warning("%s failed for job %s", path, job_id, exc_info=True)


def stale_live_jobs(*, older_than: timedelta) -> list[tuple[int, str]]:
    """(job id, owner) of submitted/running jobs whose heartbeat is older than ``older_than``."""
    cutoff = timezone.now() - older_than
    return list(
        Job.objects.filter(status__in=LIVE)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
        .values_list("pk", "worker")
    )


def live_jobs_with_owner() -> list[tuple[int, str]]:
    return list(Job.objects.filter(status__in=LIVE_STATUSES).values_list("pk", "worker"))
