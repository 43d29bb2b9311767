"""django-q2 tasks: thin, idempotent, ids in, one service call each."""

from __future__ import annotations

import logging

from django.db import transaction
from redis.exceptions import RedisError

from quality.services import orchestration as orchestrations
from quality.services.catch_up import jobs_score_announced, score_missing_enqueue
from quality.services.evaluations import evaluation_run
from quality.services.scoring import job_score

logger = logging.getLogger(__name__)

BROKER_ERRORS = (RedisError, OSError)  # what an unreachable broker raises (redis-py, sockets)


def score_job(job_id: int) -> str:
    """Score one succeeded job (``score_missing``, or by hand); safe to re-deliver."""
    gate = job_score(job_id=job_id)
    if gate is None:
        return "not scored"
    _step_orchestrations([job_id])
    return str(gate.details.get("outcome", "scored"))


def job_succeeded(job_id: int) -> None:
    """generation's ``TOWER_ON_JOB_SUCCEEDED`` hook (in the engine's process, after the success
    commits): have the job scored on a worker. An unreachable broker is logged, never raised."""
    transaction.on_commit(lambda: _enqueue_succeeded(job_id))


def score_succeeded(job_id: int) -> str:
    """Score an announced job, and the recent unscored jobs with it (``catch_up``); safe to re-deliver."""
    batch = jobs_score_announced(job_id=job_id)
    if batch is None:
        return "already scored"
    scored = [pk for pk, gate in batch.gates.items() if gate is not None]
    _step_orchestrations(scored)
    return f"{len(scored)} scored" + (f", {len(batch.failed)} failed" if batch.failed else "")


def _step_orchestrations(job_ids: list[int]) -> None:
    """Conclude the orchestration attempts among the jobs just scored (their gate passed or not).

    Logged, never raised: the scores are stored, and reconcile steps the orchestration later.
    """
    try:
        orchestrations.orchestrations_after_scoring(job_ids=job_ids)
    except Exception:
        logger.warning("stepping the orchestrations of jobs %s failed; reconcile will", job_ids, exc_info=True)
    _step_scenes(job_ids)


def _step_scenes(job_ids: list[int]) -> None:
    """Conclude the scene segments among the jobs just scored; logged, never raised (reconcile steps later)."""
    from quality.movie.chain import scenes_after_scoring

    try:
        scenes_after_scoring(job_ids=job_ids)
    except Exception:
        logger.warning("stepping the scenes of jobs %s failed; reconcile will", job_ids, exc_info=True)


def job_failed(job_id: int) -> None:
    """generation's ``TOWER_ON_JOB_FAILED`` hook: a failed job of a running orchestration is a
    failed attempt; its step runs on a worker (this runs in the engine's process: one query)."""
    _scene_job_failed(job_id)
    orchestration_id = orchestrations.orchestration_of_job(job_id=job_id)
    if orchestration_id is None:
        return
    from generation import tasks

    try:
        tasks.async_task(
            "quality.tasks.orchestration_step",
            orchestration_id,
            job_id,
            task_name=f"orchestration-{orchestration_id}-{job_id}",
            group="quality",
        )
    except BROKER_ERRORS as exc:
        logger.warning("could not step orchestration %s (%s); reconcile will", orchestration_id, exc)


def _scene_job_failed(job_id: int) -> None:
    """A failed job of a running scene's current segment is a failed attempt: step the run on a worker."""
    from generation import tasks
    from quality.movie.chain import scene_run_of_job

    run_id = scene_run_of_job(job_id=job_id)
    if run_id is None:
        return
    try:
        tasks.async_task(
            "quality.tasks.scene_step", run_id, job_id, task_name=f"scene-{run_id}-{job_id}", group="quality"
        )
    except BROKER_ERRORS as exc:
        logger.warning("could not step scene run %s (%s); reconcile will", run_id, exc)


def scene_step(run_id: int, job_id: int | None = None) -> str:
    """Conclude a scene run's current segment attempt if it ended; safe to re-deliver."""
    from quality.movie.chain import scene_step as step

    return step(run_id=run_id, job_id=job_id)


def scenes_reconcile() -> str:
    """Resume running scene runs whose current segment has no live job (``TOWER_ON_RECONCILE``)."""
    from quality.movie.chain import scenes_reconcile as reconcile

    outcomes = reconcile()
    return f"{len(outcomes)} running scene run(s) checked"


def orchestration_step(orchestration_id: int, job_id: int | None = None) -> str:
    """Conclude an orchestration's current attempt if it ended; safe to re-deliver."""
    return orchestrations.orchestration_step(orchestration_id=orchestration_id, job_id=job_id)


def orchestrations_reconcile() -> str:
    """Resume running orchestrations whose current phase has no live job (``TOWER_ON_RECONCILE``)."""
    outcomes = orchestrations.orchestrations_reconcile()
    return f"{len(outcomes)} running orchestration(s) checked"


def score_missing() -> list[int]:
    """Re-enqueue scoring of recent succeeded jobs that have no gate (``settings.TOWER_ON_RECONCILE``)."""
    return score_missing_enqueue(enqueue=enqueue_score)


def evaluate_media(evaluation_id: int) -> str:
    """Score one ``POST /quality/evaluate`` upload or asset here, not in the web process."""
    return evaluation_run(evaluation_id=evaluation_id)


def enqueue_evaluation(evaluation_id: int) -> None:
    from generation import tasks

    tasks.async_task(
        "quality.tasks.evaluate_media", evaluation_id, task_name=f"evaluate-{evaluation_id}", group="quality"
    )


def enqueue_score(job_id: int) -> None:
    from generation import tasks  # the broker connection generation already keeps

    tasks.async_task("quality.tasks.score_job", job_id, task_name=f"score_job-{job_id}", group="quality")


def _enqueue_succeeded(job_id: int) -> None:
    from generation import tasks

    try:
        tasks.async_task(
            "quality.tasks.score_succeeded", job_id, task_name=f"score_succeeded-{job_id}", group="quality"
        )
    except BROKER_ERRORS as exc:
        logger.warning("could not have job %s scored (%s); score_missing will catch up", job_id, exc)
