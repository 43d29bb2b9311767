"""Keeping the engine honest: backend health, dispatch of queued jobs, adoption of orphans.

Runs as a task on every worker start (django-q2's ``post_spawn``), once a minute from the
schedule, and dispatch also runs whenever a job ends. Every step is idempotent: two reconciles at
once claim nothing twice, because claims are conditional updates.

Apps above generation add their own catch-up steps through ``settings.TOWER_ON_RECONCILE``: a list
of dotted paths to functions taking no arguments, called (in this process, in order) after
dispatch; like ``TOWER_ON_JOB_SUCCEEDED``, a visible subscription rather than a signal. A hook that
raises is logged and does not stop the others. (quality's ``score_missing`` re-enqueues scoring of
jobs whose success announcement the broker lost.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from generation.comfyui import ComfyClient
from generation.comfyui.errors import ComfyError
from generation.engine.identity import owner_is_dead
from generation.models import Backend, BackendObjectInfo, Job, JobStatus
from generation.services.reads import backend_states, stale_live_jobs

logger = logging.getLogger(__name__)

OBJECT_INFO_MAX_AGE = timedelta(minutes=10)


@dataclass
class ReconcileReport:
    backends_up: list[str] = field(default_factory=list)
    backends_down: list[str] = field(default_factory=list)
    adopted: list[int] = field(default_factory=list)
    dispatched: list[int] = field(default_factory=list)
    hooks: dict[str, object] = field(default_factory=dict)


async def _poll(backend: Backend, want_object_info: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str]:
    try:
        async with ComfyClient(backend.url, timeout=min(settings.COMFYUI_TIMEOUT, 5.0)) as comfy:
            raw_stats = await comfy._http.get_json("/system_stats")  # keep the raw body for the admin
            info = await comfy.object_info() if want_object_info else None
            return raw_stats, info, ""
    except ComfyError as exc:
        return None, None, str(exc) or exc.__class__.__name__


def backend_refresh(*, backend: Backend, force_object_info: bool = False) -> bool:
    """Poll one backend's /system_stats (and /object_info when stale); store health. True if up."""
    cached = BackendObjectInfo.objects.filter(backend=backend).values_list("fetched_at", flat=True).first()
    now = timezone.now()
    want_info = force_object_info or cached is None or now - cached > OBJECT_INFO_MAX_AGE or not backend.healthy
    stats, info, error = asyncio.run(_poll(backend, want_info))
    if stats is None:
        Backend.objects.filter(pk=backend.pk).update(healthy=False, last_error=error[:2000])
        return False
    system = stats.get("system") or {}
    fields = {
        "healthy": True,
        "last_seen_at": now,
        "last_error": "",
        "stats": stats,
        "comfyui_version": str(system.get("comfyui_version") or "")[:40],
    }
    if info is not None:
        data = json.dumps(info, sort_keys=True).encode()
        BackendObjectInfo.objects.update_or_create(
            backend=backend,
            defaults={"data": info, "digest": hashlib.sha256(data).hexdigest(), "fetched_at": now},
        )
        fields["node_classes"] = sorted(info)
        fields["object_info_fetched_at"] = now
    Backend.objects.filter(pk=backend.pk).update(**fields)
    return True


def free_slots() -> int:
    """Prompts the enabled, healthy backends can still take."""
    states = backend_states()
    return sum(max(0, s.max_in_flight - s.in_flight) for s in states if s.enabled and s.healthy)


def dispatch(*, enqueue: Callable[[int], None], limit: int | None = None) -> list[int]:
    """Hand the oldest queued jobs to workers, as many as there are free backend slots."""
    queued = Job.objects.filter(status=JobStatus.QUEUED).filter(Q(graph__isnull=False))
    if not queued.exists():  # the common case after a job ends: skip the backend scan
        return []
    free = free_slots()
    if limit is not None:
        free = min(free, limit)
    if free <= 0:
        return []
    ids = list(queued.order_by("created_at").values_list("pk", flat=True)[:free])
    for job_id in ids:
        enqueue(job_id)
    return ids


def orphaned_jobs() -> list[int]:
    """Live jobs whose worker process is gone (same host) or silent past the stale limit."""
    stale = {pk for pk, _ in stale_live_jobs(older_than=timedelta(seconds=settings.TOWER_HEARTBEAT_STALE_SECONDS))}
    dead = {
        pk
        for pk, owner in Job.objects.filter(status__in=[JobStatus.SUBMITTED, JobStatus.RUNNING]).values_list(
            "pk", "worker"
        )
        if owner and owner_is_dead(owner)
    }
    return sorted(stale | dead)


def reconcile(*, enqueue_run: Callable[[int], None], enqueue_adopt: Callable[[int], None]) -> ReconcileReport:
    report = ReconcileReport()
    for backend in Backend.objects.filter(enabled=True):
        (report.backends_up if backend_refresh(backend=backend) else report.backends_down).append(backend.name)
    up = set(report.backends_up)
    for job_id in orphaned_jobs():
        backend_name = Job.objects.filter(pk=job_id).values_list("backend__name", flat=True).first()
        if backend_name in up or backend_name is None:
            enqueue_adopt(job_id)
            report.adopted.append(job_id)
    report.dispatched = dispatch(enqueue=enqueue_run)
    for path in getattr(settings, "TOWER_ON_RECONCILE", ()):
        try:
            report.hooks[path] = import_string(path)()
        except Exception as exc:  # one app's catch-up must not stop the engine's reconcile
            logger.warning("reconcile hook %s failed", path, exc_info=True)
            report.hooks[path] = f"failed: {exc.__class__.__name__}"
    return report
