"""django-q2 tasks: thin, idempotent, ids in, one service call each."""

from __future__ import annotations

from quality.services.catch_up import score_missing_enqueue
from quality.services.scoring import job_score


def score_job(job_id: int) -> str:
    """Score a succeeded job (enqueued by ``settings.TOWER_ON_JOB_SUCCEEDED``); safe to re-deliver."""
    gate = job_score(job_id=job_id)
    if gate is None:
        return "not scored"
    return str(gate.details.get("outcome", "scored"))


def job_succeeded(job_id: int) -> None:
    """generation's ``TOWER_ON_JOB_SUCCEEDED`` hook: have the job scored by a worker."""
    enqueue_score(job_id)


def enqueue_score(job_id: int) -> None:
    from generation import tasks  # the broker connection generation already keeps

    tasks.async_task("quality.tasks.score_job", job_id, task_name=f"score_job-{job_id}", group="quality")


def score_missing() -> list[int]:
    """Re-enqueue scoring of recent succeeded jobs that have no gate (``settings.TOWER_ON_RECONCILE``)."""
    return score_missing_enqueue(enqueue=enqueue_score)
