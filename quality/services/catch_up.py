"""Which succeeded jobs still lack a score, and scoring them: when announced, and when not.

Announced. Generation calls ``quality.tasks.job_succeeded`` after each success commits; it enqueues
``quality.tasks.score_succeeded`` for the job (after the caller's commit, ``on_commit``), which
runs :func:`jobs_score_announced` on a worker: the job, with the other jobs that succeeded
recently and have no gate yet, oldest first, at most :data:`ANNOUNCED_LIMIT`. A burst's first task
so scores the jobs announced behind it, whose own tasks then find them scored (one query). Two
such tasks running at once may measure the same jobs; scoring writes each gate once (the job's row
is locked), so the later one only wasted the measuring.

Not announced. A broker that is down at the announcement loses it, and a task that crashes
leaves its jobs unscored. The next announced job's task takes those that finished within
:data:`RECENT`; ``quality.tasks.score_missing`` runs wherever generation's reconcile runs
(``settings.TOWER_ON_RECONCILE``: every worker start and once a minute) and enqueues ``score_job``
for the others, one task each: succeeded, finished within the last :data:`CATCH_UP_HOURS` hours
(older ones were seen by earlier runs; a deployment that was down longer can run ``score_job`` by
hand), with at least one output, without a post-generation gate, and finished at least
:data:`GRACE` ago, so a job whose announcement is merely still in the queue is not enqueued twice.
At most :data:`CATCH_UP_LIMIT` per run, oldest first; the next run takes the rest. A job whose
scoring always raises is so retried by the tasks of the jobs that follow it for :data:`RECENT`,
then once a reconcile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from generation.models import Asset, Job, JobStatus
from quality.metrics import MetricModels
from quality.models import GateStage, QualityGate
from quality.services.scoring import BatchScore, jobs_score

logger = logging.getLogger(__name__)

CATCH_UP_HOURS = 24
CATCH_UP_LIMIT = 20
GRACE = timedelta(minutes=5)
RECENT = GRACE  # announced tasks take the jobs of this window; score_missing those older
ANNOUNCED_LIMIT = 100  # jobs one announced job's task scores


def jobs_missing_scores(
    *,
    since: timedelta = timedelta(hours=CATCH_UP_HOURS),
    limit: int = CATCH_UP_LIMIT,
    grace: timedelta | None = GRACE,
) -> list[int]:
    """Ids of succeeded jobs with outputs and no post-generation gate that finished within
    ``since`` and at least ``grace`` ago (None: however recently), oldest first."""
    now = timezone.now()
    gated = QualityGate.objects.filter(job=OuterRef("pk"), stage=GateStage.POST_GEN)
    has_assets = Asset.objects.filter(job=OuterRef("pk"))
    rows = Job.objects.filter(status=JobStatus.SUCCEEDED, finished_at__gte=now - since)
    if grace is not None:
        rows = rows.filter(finished_at__lte=now - grace)
    rows = rows.filter(Exists(has_assets)).exclude(Exists(gated)).order_by("finished_at", "pk")
    return list(rows.values_list("pk", flat=True)[:limit])


def jobs_score_announced(
    *, job_id: int, limit: int | None = None, models: MetricModels | None = None
) -> BatchScore | None:
    """Score an announced job with the recent jobs still unscored, at most ``limit``
    (:data:`ANNOUNCED_LIMIT`) in all (see the module docstring); None when the job has its gate
    already (a task before this one scored it)."""
    if QualityGate.objects.filter(job_id=job_id, stage=GateStage.POST_GEN).exists():
        return None
    limit = limit or ANNOUNCED_LIMIT
    ids = jobs_missing_scores(since=RECENT, limit=limit, grace=None)
    if job_id not in ids:  # no outputs (its gate says so), or past the limit
        ids = [job_id, *ids[: limit - 1]]
    batch = jobs_score(job_ids=ids, models=models)
    for failed, exc in batch.failed.items():
        logger.error("scoring job %s failed; score_missing will retry it", failed, exc_info=exc)
    return batch


def score_missing_enqueue(
    *, enqueue: Callable[[int], None], hours: int = CATCH_UP_HOURS, limit: int = CATCH_UP_LIMIT
) -> list[int]:
    """Enqueue scoring of every job :func:`jobs_missing_scores` finds; returns their ids."""
    ids = jobs_missing_scores(since=timedelta(hours=hours), limit=limit)
    for job_id in ids:
        enqueue(job_id)
    if ids:
        logger.info("catching up on %d unscored job(s): %s", len(ids), ids)
    return ids
