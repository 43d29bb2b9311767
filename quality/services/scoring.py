"""Scoring a finished job's outputs, its post-generation gate, and bounded regeneration.

Flow (``quality.tasks.score_job``, enqueued by generation's ``TOWER_ON_JOB_SUCCEEDED`` hook):
the job stays SUCCEEDED while it is scored (its outputs exist; SCORING is not used, so the engine
and its status machine are untouched). Every asset is measured (one batch per network), one
``QualityScore`` row per metric is stored exactly as the metric returned it, with its model id.

Gate (``QualityGate`` stage ``post_gen``), with the project's thresholds:

- ``character_similarity`` ≥ the character's ``consistency_threshold`` (jobs with a character);
- ``aesthetic`` ≥ ``project.threshold_aesthetic``;
- clips only: ``subject_consistency`` (temporal coherence) ≥ ``project.threshold_temporal`` and
  ``motion_smoothness`` ≥ ``project.threshold_motion``;
- loops (job kind ``loop``, phase 2) also: ``loop_seamlessness`` passes when its ``seamless`` flag is
  set, i.e. the last → first step is at most ``SEAM_TOLERANCE`` (2) × the clip's median step + 1
  grey level. Its stored threshold is :data:`LOOP_SEAM_THRESHOLD` = 1 / ``SEAM_TOLERANCE`` = 0.5:
  with value = min(1, (median + 1) / (seam + 1)), ``value ≥ 0.5`` is the same rule, so the number
  and the verdict never disagree. Not a project setting: a seam twice as large as any other step is
  visible whatever the style;
- an output that could not be read is a failed check (``media``).

A gated metric that did not run (weights missing, no face, error) is *skipped*: listed in the
details with its reason and the command that fixes it. Outcome ``passed`` when every evaluated
check passed, ``failed`` when one failed, ``not_evaluated`` (``passed`` is NULL) when nothing could
be evaluated: never a pass by default.

Regeneration: a failed gate queues the same job with a new seed
(``generation.services.regenerate.job_regenerate``, parent = the failed job) while the chain of
regenerations from the original is shorter than ``project.max_regenerations``. The gate's
``details["regenerated_as"]`` links the attempts. When a chain ends (a pass, a not-evaluated
attempt, or the limit), the best attempt (passing first, then highest ``combined_score``: the mean
over evaluated checks of value / threshold, 0 for unreadable media) is kept: every gate of the
chain records ``kept_job`` and the best one ``kept: true``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction

from characters.models import Character
from generation import events
from generation.models import Asset, Job, JobKind, JobStatus
from generation.services.jobs import JobError, job_log
from generation.services.regenerate import job_regenerate
from projects.models import Project
from quality.metrics import MetricModels, MetricResult, Status
from quality.metrics.temporal import SEAM_TOLERANCE
from quality.models import GateStage, QualityGate, QualityScore
from quality.services import common
from quality.services.measure import Media, measure, read_media

logger = logging.getLogger(__name__)

ANIMATED_KINDS = {JobKind.LOOP, JobKind.VIDEO, JobKind.SEGMENT}
LOOP_SEAM_THRESHOLD = 1.0 / SEAM_TOLERANCE


def gate_thresholds(
    project: Project, character: Character | None, *, animated: bool, loop: bool = False
) -> dict[str, float]:
    """The gated metrics of one output and their thresholds (``loop``: a phase-2 loop job)."""
    thresholds = {"aesthetic": project.threshold_aesthetic}
    if character is not None:
        thresholds["character_similarity"] = character.consistency_threshold
    if animated:
        thresholds["subject_consistency"] = project.threshold_temporal
        thresholds["motion_smoothness"] = project.threshold_motion
        if loop:
            thresholds["loop_seamlessness"] = LOOP_SEAM_THRESHOLD
    return thresholds


def score_row(asset: Asset, result: MetricResult, threshold: float | None, character_id: int | None) -> QualityScore:
    details = dict(result.details)
    details.pop("passed", None)
    details.pop("threshold", None)
    if result.fix:
        details["fix"] = result.fix
    passed: bool | None = None
    if result.metric == "media":
        passed = False  # an output that cannot be read fails, with no value
    elif result.metric == "loop_seamlessness" and threshold is not None and result.ok:
        passed = bool(result.details.get("seamless"))  # the metric's own rule (module docstring)
    elif threshold is not None and result.ok:
        passed = bool(result.value >= threshold)  # type: ignore[operator]
    return QualityScore(
        asset=asset,
        metric=result.metric,
        value=result.value if result.ok else None,
        threshold=threshold,
        passed=passed,
        status=result.status.value,
        model_id=result.model_id,
        character_id=character_id,
        details=details,
    )


def gate_details(rows: Sequence[QualityScore]) -> dict[str, Any]:
    """Checks, skipped metrics, outcome and combined score of a set of stored score rows."""
    checks, skipped, ratios = [], [], []
    for row in rows:
        if row.metric == "media":
            checks.append({"asset": row.asset_id, "metric": "media", "value": None, "passed": False, **row.details})
            ratios.append(0.0)
            continue
        if row.threshold is None:
            continue
        if row.status == Status.OK:
            checks.append(
                {
                    "asset": row.asset_id,
                    "metric": row.metric,
                    "value": row.value,
                    "threshold": row.threshold,
                    "passed": row.passed,
                }
            )
            ratios.append(row.value / row.threshold if row.threshold else float(row.value or 0.0))  # type: ignore[operator]
        else:
            skipped.append(
                {
                    "asset": row.asset_id,
                    "metric": row.metric,
                    "status": row.status,
                    "reason": row.details.get("reason", ""),
                    "fix": row.details.get("fix", ""),
                }
            )
    if not checks:
        outcome = "not_evaluated"
    elif all(c["passed"] for c in checks):
        outcome = "passed"
    else:
        outcome = "failed"
    return {
        "outcome": outcome,
        "evaluated": sorted({c["metric"] for c in checks}),
        "skipped_metrics": sorted({s["metric"] for s in skipped}),
        "checks": checks,
        "skipped": skipped,
        "fix": sorted({s["fix"] for s in skipped if s["fix"]}),
        "combined_score": round(sum(ratios) / len(ratios), 6) if ratios else None,
    }


def _read_asset(asset: Asset) -> Media:
    try:
        with asset.file.open("rb") as handle:
            data = handle.read()
    except OSError as exc:
        return Media(asset.pk, error=f"the file cannot be read ({exc.__class__.__name__})")
    return read_media(asset.pk, data)


def job_score(*, job_id: int, models: MetricModels | None = None) -> QualityGate | None:
    """Score a succeeded job's outputs, gate them, regenerate if needed; idempotent.

    Returns the post-generation gate (the existing one when the job was scored before), or None
    for a job that is missing or not succeeded.
    """
    job = Job.objects.select_related("project", "character__project", "template").filter(pk=job_id).first()
    if job is None or job.status != JobStatus.SUCCEEDED:
        return None
    existing = QualityGate.objects.filter(job=job, stage=GateStage.POST_GEN).first()
    if existing is not None:
        return existing
    assets = list(Asset.objects.filter(job=job).order_by("pk"))
    media = [_read_asset(a) for a in assets]
    # The heavy part runs outside any transaction; the writes below are short.
    results = (
        measure(media, models=models or common.metric_models(), character=job.character, loop=job.kind == JobKind.LOOP)
        if media
        else {}
    )
    by_pk = {a.pk: a for a in assets}
    animated = {m.key: m.animated or job.kind in ANIMATED_KINDS for m in media}
    rows = [
        score_row(
            by_pk[key],
            result,
            gate_thresholds(job.project, job.character, animated=animated[key], loop=job.kind == JobKind.LOOP).get(
                result.metric
            ),
            job.character_id,
        )  # type: ignore[index]
        for key, found in results.items()
        for result in found
    ]
    with transaction.atomic():
        locked = Job.objects.select_for_update().filter(pk=job.pk).first()
        if locked is None:
            return None
        existing = QualityGate.objects.filter(job=job, stage=GateStage.POST_GEN).first()
        if existing is not None:  # a re-delivered task got here first
            return existing
        QualityScore.objects.bulk_create(rows)
        details = gate_details(rows)
        if not assets:
            details["reason"] = "the job has no outputs"
        gate = QualityGate.objects.create(
            job=job,
            stage=GateStage.POST_GEN,
            passed={"passed": True, "failed": False}.get(details["outcome"]),
            details=details,
        )
        job_log(job_id=job.pk, message=_summary(details))
        _after_gate(job, gate)
        events.job_event(
            "quality_evaluation",
            job_id=job.pk,
            project_id=job.project_id,
            user_id=job.created_by_id,
            stage=gate.stage,
            outcome=gate.details["outcome"],
            passed=gate.passed,
            combined_score=gate.details["combined_score"],
            skipped=gate.details["skipped_metrics"],
            regenerated_as=gate.details.get("regenerated_as"),
            kept_job=gate.details.get("kept_job"),
            scores=[
                {"asset": r.asset_id, "metric": r.metric, "value": r.value, "status": r.status, "passed": r.passed}
                for r in rows
            ],
        )
    from quality.services.phases import phase_gates_after_scoring

    phase_gates_after_scoring(job=job)
    return gate


def _summary(details: dict[str, Any]) -> str:
    text = f"post-generation gate: {details['outcome'].replace('_', ' ')}"
    if details["skipped_metrics"]:
        text += f" (skipped: {', '.join(details['skipped_metrics'])}"
        text += f"; fix: {' ; '.join(details['fix'])})" if details["fix"] else ")"
    return text


# --- regeneration chain -------------------------------------------------------------------------


def regeneration_chain(job: Job) -> list[tuple[Job, QualityGate]]:
    """(job, gate) from the original attempt to ``job``, following ``regenerated_as`` links."""
    chain: list[tuple[Job, QualityGate]] = []
    current: Job | None = job
    child_pk: int | None = None
    while current is not None:
        gate = QualityGate.objects.filter(job=current, stage=GateStage.POST_GEN).first()
        if gate is None or (child_pk is not None and gate.details.get("regenerated_as") != child_pk):
            break
        chain.append((current, gate))
        child_pk = current.pk
        current = Job.objects.filter(pk=current.parent_id).first() if current.parent_id else None
    chain.reverse()
    return chain


def _after_gate(job: Job, gate: QualityGate) -> None:
    chain = regeneration_chain(job)
    chain[-1] = (job, gate)  # the same instance the caller holds, not a second copy of the row
    outcome = gate.details["outcome"]
    regenerations = len(chain) - 1
    limit = job.project.max_regenerations
    if outcome == "failed" and regenerations < limit:
        failing = ", ".join(sorted({c["metric"] for c in gate.details["checks"] if not c["passed"]}))
        try:
            child = job_regenerate(job=job, reason=f"post-generation gate failed ({failing})")
        except JobError as exc:
            gate.details["regeneration"] = f"not possible: {exc}"
        else:
            gate.details.update(regenerated_as=child.pk, attempt=regenerations + 1, max_regenerations=limit)
            gate.save(update_fields=["details"])
            return
    elif outcome == "failed":
        gate.details["regeneration"] = f"limit reached ({limit} regenerations)"
    gate.details.update(attempt=regenerations + 1, max_regenerations=limit)
    gate.save(update_fields=["details"])
    _keep_best(chain)


def _keep_best(chain: list[tuple[Job, QualityGate]]) -> None:
    def rank(item: tuple[Job, QualityGate]) -> tuple[bool, float]:
        details = item[1].details
        return (details["outcome"] == "passed", details.get("combined_score") or 0.0)

    best_job, _ = max(chain, key=rank)
    for attempt, gate in chain:
        gate.details.update(kept_job=best_job.pk, kept=attempt.pk == best_job.pk)
        gate.save(update_fields=["details"])
    if len(chain) > 1:
        job_log(job_id=best_job.pk, message=f"kept as the best of {len(chain)} attempts")
