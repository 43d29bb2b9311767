"""Reads for the score-aware gallery: assets with their current scores and verdict, in one query.

An asset may be scored more than once (a metric re-run with a new model or threshold); only the
newest row of each metric counts ("current"). Its verdict (``Asset.verdict``, kept by
``quality.services.verdicts``):

- ``failed``: some current score has ``passed = False``;
- ``passed``: some current score has ``passed = True`` and none failed;
- ``unscored``: no current score carries a verdict (never scored, or only metrics that could not
  run or have no threshold).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from generation.models import Asset, AssetVerdict, Job
from generation.selectors import assets_visible_to
from projects.selectors import AnyUser, in_visible_project
from quality.charts import Sparkline, temporal_chart
from quality.fetch import ScoringModels, metric_label, scoring_models
from quality.models import GateStage, QualityGate, QualityScore, ScoreStatus
from quality.services.verdicts import AESTHETIC, SIMILARITY

Verdict = AssetVerdict  # kept on the asset by quality.services.verdicts


def gallery_assets(
    *,
    user: AnyUser,
    project: Any = None,
    character: Any = None,
    kind: str = "",
    verdict: str = "",
    min_aesthetic: float | None = None,
    min_similarity: float | None = None,
) -> QuerySet[Asset]:
    """The assets ``user`` may see, newest first, filtered; one query per page whatever the rows.

    A score threshold keeps only assets whose current value of that metric reaches it (an asset
    without that score is left out). Verdict and values are the asset's copies of its current scores.
    """
    assets = assets_visible_to(user).select_related("job__character")
    if project is not None:
        assets = assets.filter(project=project)
    if character is not None:
        assets = assets.filter(job__character=character)
    if kind:
        assets = assets.filter(kind=kind)
    if verdict:
        assets = assets.filter(verdict=verdict)
    if min_aesthetic is not None:
        assets = assets.filter(aesthetic__gte=min_aesthetic)
    if min_similarity is not None:
        assets = assets.filter(similarity__gte=min_similarity)
    return assets.order_by("-created_at", "-pk")


def gallery_scores_present(*, user: AnyUser) -> set[str]:
    """Which of the gallery's score filters (``aesthetic``, ``character_similarity``) any output
    ``user`` may see has a value for: a filter on a score nothing has yet would only empty the grid."""
    rows = QualityScore.objects.filter(in_visible_project(user, "asset__project"), status=ScoreStatus.OK)
    # One EXISTS per metric, which stops at the first row (a DISTINCT read every score); the
    # project check per row, since asset__in=(visible assets) made SQLite list every visible asset.
    return {metric for metric in (AESTHETIC, SIMILARITY) if rows.filter(metric=metric).exists()}


def asset_scores(*, asset: Asset) -> list[QualityScore]:
    """The asset's current score of each metric (for the lightbox), by metric name."""
    rows = QualityScore.objects.filter(asset=asset).order_by("metric", "-pk")
    current: dict[str, QualityScore] = {}
    for row in rows:
        current.setdefault(row.metric, row)
    return list(current.values())


@dataclass
class AssetInspection:
    """One output as the lightbox and the asset page show it."""

    asset: Asset  # annotated like the gallery's (verdict, aesthetic, similarity)
    scores: list[QualityScore]  # current rows, gated metrics first
    position: int  # 1-based, among its job's outputs
    outputs: int  # how many outputs its job has
    parameters: list[tuple[str, Any]]  # the job's resolved parameters worth showing


HIDDEN_PARAMETERS = frozenset({"inputs", "seed", "prompt", "negative"})  # shown on their own


def asset_neighbours(*, user: AnyUser, asset: Asset) -> tuple[int | None, int | None]:
    """The ids of the outputs before and after ``asset`` in the gallery's order (newest first)."""
    visible = assets_visible_to(user).select_related(None).order_by()
    newer = visible.filter(
        models.Q(created_at__gt=asset.created_at) | models.Q(created_at=asset.created_at, pk__gt=asset.pk)
    )
    older = visible.filter(
        models.Q(created_at__lt=asset.created_at) | models.Q(created_at=asset.created_at, pk__lt=asset.pk)
    )
    before = newer.order_by("created_at", "pk").values_list("pk", flat=True).first()
    after = older.order_by("-created_at", "-pk").values_list("pk", flat=True).first()
    return before, after


def asset_inspect(*, user: AnyUser, pk: int) -> AssetInspection:
    """The output if ``user`` may see it (404 otherwise), with its scores and place in its job."""
    asset = get_object_or_404(gallery_assets(user=user).select_related("job__character", "job__template"), pk=pk)
    position = outputs = 1
    parameters: list[tuple[str, Any]] = []
    if asset.job is not None:  # selected with the asset
        siblings = list(Asset.objects.filter(job=asset.job).order_by("pk").values_list("pk", flat=True))
        outputs, position = len(siblings), siblings.index(asset.pk) + 1
        params = asset.job.params or {}
        parameters = [(k, v) for k, v in params.items() if k not in HIDDEN_PARAMETERS and v not in (None, "", [], {})]
    scores = _current(list(QualityScore.objects.filter(asset=asset)))
    return AssetInspection(asset=asset, scores=scores, position=position, outputs=outputs, parameters=parameters)


# --- the job page's quality panel ----------------------------------------------------------------


@dataclass
class OutputQuality:
    asset: Asset
    scores: list[QualityScore]  # current rows, gated metrics first
    chart: Sparkline | None  # clips only


@dataclass
class JobQuality:
    job: Job
    outputs: list[OutputQuality]
    gates: list[QualityGate]
    # Metrics that did not run because their model weights are missing, in plain words, and the
    # models' state now (downloading, still missing, or in since): the card says it once.
    off_metrics: list[str] = field(default_factory=list)
    models: ScoringModels | None = None

    @property
    def scored(self) -> bool:
        # A pre_gen gate is written at submission: it says nothing about the outputs.
        return any(g.stage != GateStage.PRE_GEN for g in self.gates) or any(o.scores for o in self.outputs)


def _current(rows: list[QualityScore]) -> list[QualityScore]:
    current: dict[str, QualityScore] = {}
    for row in sorted(rows, key=lambda r: -r.pk):
        current.setdefault(row.metric, row)
    return sorted(current.values(), key=lambda r: (r.threshold is None and r.metric != "media", r.metric))


def _skipped_lines(skipped: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """A gate's skipped checks as (metric, why), once per metric and reason whatever the outputs."""
    lines: dict[tuple[str, str], None] = {}
    for entry in skipped:
        if entry.get("status") == ScoreStatus.UNAVAILABLE:
            why = "off (model not downloaded)"
        else:
            why = str(entry.get("reason") or entry.get("status") or "")
        lines[(str(entry.get("metric", "")), why)] = None
    return list(lines)


def job_quality(*, job: Job) -> JobQuality:
    """Every output's current scores (and per-frame chart) and the job's gates: three queries."""
    assets = Asset.objects.filter(job=job).order_by("pk").prefetch_related(Prefetch("scores"))
    outputs = []
    for asset in assets:
        scores = _current(list(asset.scores.all()))
        chart = temporal_chart({row.metric: row.details for row in scores})
        outputs.append(OutputQuality(asset=asset, scores=scores, chart=chart))
    gates = list(QualityGate.objects.filter(job=job).order_by("created_at", "pk"))
    for gate in gates:
        gate.skipped_lines = _skipped_lines(gate.details.get("skipped") or [])  # type: ignore[attr-defined]  # for the template only
    off = sorted({s.metric for o in outputs for s in o.scores if s.status == ScoreStatus.UNAVAILABLE})
    models_now = scoring_models(settings.MODELS_DIR) if off else None
    return JobQuality(
        job=job, outputs=outputs, gates=gates, off_metrics=[metric_label(m) for m in off], models=models_now
    )
