"""What the engine reads to decide: backends with their prompts in flight, cached /object_info,
and the live jobs reconcile looks after."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from generation.models import Backend, BackendObjectInfo, Job, JobStatus
from generation.pool import BackendState

LIVE = [JobStatus.SUBMITTED, JobStatus.RUNNING]

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

# When each backend's /object_info was last stored, as the latest backend_states() read it: a
# claim hands it to backend_object_info() so an unchanged copy costs no query.
object_info_fetched: dict[int, datetime | None] = {}


def _in_flight(ended: Collection[int]) -> Subquery:
    """Count of a backend's live jobs whose prompts are still on the server: a live job whose
    prompt has finished (``prompt_done_at``, or in ``ended``) is only storing its outputs."""
    jobs = Job.objects.filter(backend=OuterRef("pk"), status__in=LIVE, prompt_done_at__isnull=True)
    if ended:
        jobs = jobs.exclude(pk__in=list(ended))
    # A correlated subquery rather than a join + GROUP BY: PostgreSQL refuses FOR UPDATE with GROUP BY.
    return Subquery(jobs.order_by().values("backend").annotate(n=Count("pk")).values("n"), output_field=IntegerField())


def backend_states(*, lock: bool = False, ended: Collection[int] = ()) -> list[BackendState]:
    """Every enabled backend with its prompts in flight (see :func:`_in_flight`).

    ``lock`` takes the backends' row locks (PostgreSQL) for the rest of the transaction, so two
    workers claiming at once never put more than ``max_in_flight`` prompts on one backend. SQLite
    runs every write transaction IMMEDIATE: the database lock already serializes claims.
    """
    backends = Backend.objects.filter(enabled=True).order_by("pk")
    if lock:
        backends = backends.select_for_update()
    rows = backends.annotate(busy=Coalesce(_in_flight(ended), Value(0))).values_list(*_STATE_FIELDS, "busy")
    states = []
    for pk, name, url, enabled, healthy, max_in_flight, hold, checkpoint, assigned, seen, info_at, busy in rows:
        used, node_classes = _capabilities(pk, seen, info_at)
        object_info_fetched[pk] = info_at
        states.append(
            BackendState(
                id=pk,
                name=name,
                url=url,
                enabled=enabled,
                healthy=healthy,
                in_flight=busy,
                max_in_flight=max_in_flight,
                vram_used_fraction=used,
                vram_hold=hold,
                node_classes=node_classes,
                last_checkpoint=checkpoint,
                last_used=assigned.timestamp() if assigned else 0.0,
            )
        )
    return states


def backend_prompts(backend_id: int, *, ended: Collection[int] = ()) -> QuerySet[Job]:
    """One backend's live jobs whose prompts are still on the server (see :func:`_in_flight`)."""
    jobs = Job.objects.filter(backend_id=backend_id, status__in=LIVE, prompt_done_at__isnull=True)
    if ended:
        jobs = jobs.exclude(pk__in=list(ended))
    return jobs


_capability_cache: dict[int, tuple[tuple[Any, Any], tuple[float | None, frozenset[str]]]] = {}


def _capabilities(backend_id: int, seen: Any, info_at: Any) -> tuple[float | None, frozenset[str]]:
    """(fraction of VRAM in use, node classes) of a backend, as of its last poll.

    Only the health poll changes them, and it moves ``last_seen_at`` / ``object_info_fetched_at``
    as it does: decoded once per process and poll rather than on every claim.
    """
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

    It is hundreds of kilobytes of JSON, too much to decode on every claim. The digest and fetch
    time tell when the stored copy changed; ``fetched_at`` (the backend row's
    ``object_info_fetched_at`` a claim has just read) skips even that query when it matches.
    """
    cached = _object_infos.get(backend_id)
    if fetched_at is not None and cached is not None and cached[0][1] == fetched_at:
        return cached[1]
    stored = BackendObjectInfo.objects.filter(backend_id=backend_id)
    version = stored.values_list("digest", "fetched_at").first()
    if version is None:
        _object_infos.pop(backend_id, None)
        return None
    if cached is not None and cached[0] == version:
        return cached[1]
    data: dict[str, Any] | None = stored.values_list("data", flat=True).first()
    if data is None:
        return None
    _object_infos[backend_id] = (version, data)
    return data


def job_status(*, job_id: int) -> str | None:
    return Job.objects.filter(pk=job_id).values_list("status", flat=True).first()


def stale_live_jobs(*, older_than: timedelta) -> list[tuple[int, str]]:
    """(job id, owner) of submitted/running jobs whose heartbeat is older than ``older_than``."""
    cutoff = timezone.now() - older_than
    return list(
        Job.objects.filter(status__in=LIVE)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
        .values_list("pk", "worker")
    )
