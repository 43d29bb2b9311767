"""Catching up on jobs that were never scored, because their announcement was lost.

Generation announces a succeeded job to ``quality.tasks.job_succeeded``, which has a
``score_pending`` run enqueued (``quality.services.pending``); a broker that is down at that
moment loses the announcement, and a run that crashes leaves its jobs unscored.
``quality.tasks.score_missing`` runs wherever generation's reconcile runs
(``settings.TOWER_ON_RECONCILE``: every worker start and once a minute) and enqueues
``score_job`` for such jobs, one task each.

Which jobs: succeeded, finished within the last :data:`CATCH_UP_HOURS` hours (older ones were
seen by earlier runs; a deployment that was down longer can run ``score_job`` by hand), with at
least one output, without a post-generation gate, and finished at least :data:`GRACE` ago, so a
job whose announcement is merely still in the queue is not enqueued twice. At most
:data:`CATCH_UP_LIMIT` per run, oldest first; the next run takes the rest. ``score_job`` is
idempotent, so a job enqueued twice (two workers starting at once) is scored once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import timedelta

from django.db.models import Exists, OuterRef
from django.utils import timezone

from generation.models import Asset, Job, JobStatus
from quality.models import GateStage, QualityGate

logger = logging.getLogger(__name__)

CATCH_UP_HOURS = 24
CATCH_UP_LIMIT = 20
GRACE = timedelta(minutes=5)


def jobs_missing_scores(
    *,
    hours: int = CATCH_UP_HOURS,
    limit: int = CATCH_UP_LIMIT,
    grace: timedelta | None = GRACE,
    exclude: Collection[int] = (),
) -> list[int]:
    """Ids of succeeded jobs with outputs and no post-generation gate (see the module docstring).

    ``grace=None``: however recently they finished (the pending run scores what was just
    announced); ``exclude``: ids to leave out.
    """
    now = timezone.now()
    gated = QualityGate.objects.filter(job=OuterRef("pk"), stage=GateStage.POST_GEN)
    has_assets = Asset.objects.filter(job=OuterRef("pk"))
    rows = Job.objects.filter(status=JobStatus.SUCCEEDED, finished_at__gte=now - timedelta(hours=hours))
    if grace is not None:
        rows = rows.filter(finished_at__lte=now - grace)
    if exclude:
        rows = rows.exclude(pk__in=list(exclude))
    rows = rows.filter(Exists(has_assets)).exclude(Exists(gated)).order_by("finished_at", "pk")
    return list(rows.values_list("pk", flat=True)[:limit])


def score_missing_enqueue(
    *, enqueue: Callable[[int], None], hours: int = CATCH_UP_HOURS, limit: int = CATCH_UP_LIMIT
) -> list[int]:
    """Enqueue scoring of every job :func:`jobs_missing_scores` finds; returns their ids."""
    ids = jobs_missing_scores(hours=hours, limit=limit)
    for job_id in ids:
        enqueue(job_id)
    if ids:
        logger.info("catching up on %d unscored job(s): %s", len(ids), ids)
    return ids
