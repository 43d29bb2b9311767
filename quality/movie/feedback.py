"""One quality feedback row per segment attempt: what was asked, how each dimension scored, the verdict.

Dimensions are the join's (``join_ssim``, ``join_flow_discontinuity``, gated by the project) and
the output's current score rows (``temporal_ssim``, ``motion_smoothness``, ``overall``, …); a
dimension with a verdict lands in ``successful_elements`` or ``failed_elements`` as
``{"name", "value", "threshold"}``, so a person (or :mod:`quality.movie.learning`) can read why an
attempt passed without opening its scores.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404

from generation.models import Asset, AssetKind, Job
from projects.selectors import AnyUser, project_ids_visible_to, project_user_can_write
from quality.models import JoinEvaluation, QualityFeedback, QualityScore, ScoreStatus, Segment

# Resolved parameters that are text or inputs, kept elsewhere on the row (prompt) or meaningless to compare.
PARAMS_LEFT_OUT = frozenset({"prompt", "negative", "inputs", "filename_prefix"})


def segment_output(*, segment: Segment, job: Job | None) -> Asset | None:
    """The clip an attempt made: the segment's output when it is this job's, else the job's first clip."""
    if segment.output_id is not None and (job is None or segment.output is None or segment.output.job_id == job.pk):
        return segment.output
    if job is None:
        return None
    assets = Asset.objects.filter(job=job).order_by("pk")
    return (
        assets.filter(kind=AssetKind.VIDEO).first() or assets.filter(kind=AssetKind.ANIMATION).first() or assets.first()
    )


def feedback_record(
    *, segment: Segment, job: Job | None, attempt: int, join: JoinEvaluation | None, passed: bool | None
) -> QualityFeedback:
    """Write the feedback row of one attempt at ``segment`` (``passed``: the chain's verdict on it)."""
    scores: dict[str, Any] = {}
    successful: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    if join is not None:
        details = join.details or {}
        for name, value, limit, ok in (
            ("join_ssim", join.ssim, details.get("ssim_min"), details.get("passed_ssim")),
            ("join_flow_discontinuity", join.flow_discontinuity, details.get("flow_max"), details.get("passed_flow")),
        ):
            scores[name] = value
            if ok is not None:
                (successful if ok else failed).append({"name": name, "value": value, "threshold": limit})
        if join.passed is None:
            scores["join_reason"] = details.get("reason", "")
    asset = segment_output(segment=segment, job=job)
    if asset is not None:
        current: dict[str, QualityScore] = {}
        for row in QualityScore.objects.filter(asset=asset).order_by("metric", "-pk"):
            current.setdefault(row.metric, row)
        for name, row in current.items():
            if row.status != ScoreStatus.OK:
                continue
            scores[name] = row.value
            if row.passed is not None:
                (successful if row.passed else failed).append(
                    {"name": name, "value": row.value, "threshold": row.threshold}
                )
    if job is not None and job.error_message:
        failed.append({"name": "job", "value": job.status, "threshold": None, "reason": job.error_message[:500]})
    params: dict[str, Any] = {}
    if job is not None:
        params = {k: v for k, v in (job.params or {}).items() if k not in PARAMS_LEFT_OUT}
    # What the chain asked of this attempt wins over the style's (the job's own copy: the segment's
    # params may already be the next attempt's).
    params.update((job.overrides if job is not None else segment.params) or {})
    with transaction.atomic():
        return QualityFeedback.objects.create(
            project_id=segment.scene.episode.project_id,
            template_id=job.template_id if job is not None else segment.run.template_id,
            segment=segment,
            job=job,
            attempt=attempt,
            scores=scores,
            prompt=job.prompt if job is not None else "",
            params=params,
            successful_elements=successful,
            failed_elements=failed,
            passed=passed,
        )


class FeedbackError(Exception):
    """A rating that cannot be recorded; the message says why."""


def feedback_rate(*, feedback: QualityFeedback, rating: int, user: User) -> QualityFeedback:
    """A person's rating of one attempt, 1 (bad) to 5 (good); the last rating wins."""
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise FeedbackError("rating must be a whole number from 1 to 5")
    feedback.rating, feedback.rated_by = rating, user
    feedback.save(update_fields=["rating", "rated_by"])
    return feedback


# --- reads: one access rule, as every API and page ---------------------------------------------


def feedback_visible_to(user: AnyUser) -> QuerySet[QualityFeedback]:
    """Feedback rows of the projects ``user`` can see, newest first."""
    return (
        QualityFeedback.objects.filter(project__in=project_ids_visible_to(user))
        .select_related("segment", "template")
        .order_by("-created_at", "-pk")
    )


def feedback_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> QualityFeedback:
    """The row, or 404 when invisible (403 with ``write`` for a viewer: they know it exists)."""
    try:
        row = feedback_visible_to(user).select_related("project").get(pk=int(pk))
    except (QualityFeedback.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such feedback") from None
    if write and not project_user_can_write(project=row.project, user=user):
        raise PermissionDenied("You have read-only access to this project")
    return row
