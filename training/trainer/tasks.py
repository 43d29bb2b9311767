"""django-q2 tasks for training: thin, idempotent, no arguments beyond ids."""

from __future__ import annotations

import logging

from generation.engine.identity import worker_name
from generation.models import Backend
from generation.services.reconcile import backend_refresh
from training.trainer import services

logger = logging.getLogger(__name__)


def training_dispatch() -> str:
    """Claim the oldest queued training for a free GPU slot and run it here; then dispatch the next.

    A re-delivered or surplus dispatch claims nothing and returns. Another dispatch is queued
    before the run when more slots could start work, and after it, so the queue keeps moving.
    """
    job = services.training_job_claim_next(worker=worker_name())
    if job is None:
        return "nothing to run"
    if services.training_has_dispatchable():
        services.enqueue_dispatch()
    try:
        return f"#{job.pk} " + services.training_job_run(job_id=job.pk)
    finally:
        if services.training_has_dispatchable():
            services.enqueue_dispatch()


def training_reconcile() -> dict:
    """TOWER_ON_RECONCILE hook: fail trainings whose worker died, restart dispatch of waiting ones."""
    failed = services.training_jobs_reconcile()
    dispatched = services.training_has_dispatchable()
    if dispatched:
        services.enqueue_dispatch()
    return {"failed": failed, "dispatched": dispatched}


def backends_refresh() -> dict:
    """Re-read every enabled backend's /object_info, so pre-flight knows a newly deployed LoRA."""
    report = {}
    for backend in Backend.objects.filter(enabled=True):
        report[backend.name] = backend_refresh(backend=backend, force_object_info=True)
    return report
