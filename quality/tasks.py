"""django-q2 tasks: thin, idempotent, ids in, one service call each."""

from __future__ import annotations

from quality.services.scoring import job_score


def score_job(job_id: int) -> str:
    """Score a succeeded job (enqueued by ``settings.TOWER_ON_JOB_SUCCEEDED``); safe to re-deliver."""
    gate = job_score(job_id=job_id)
    if gate is None:
        return "not scored"
    return str(gate.details.get("outcome", "scored"))
