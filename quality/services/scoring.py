"""Scoring a finished job's outputs, its post-generation gate, and bounded regeneration.

Flow (:func:`jobs_score`, run by ``quality.tasks.score_succeeded`` for the jobs generation
announced, or :func:`job_score` for one job by ``quality.tasks.score_job``): the job stays
SUCCEEDED while scored (SCORING is not used: the engine's status machine is untouched). Every
asset is measured (one batch per network), one ``QualityScore`` row per metric stored as the metric
returned it, with its model id, and the asset's copy of its verdict updated (``verdicts``).

References. A job of a character version with reference images of its own is scored against them;
otherwise against the character's (of no version), each set embedded once a batch (``references``).

Cost. Without model weights scoring is ORM-bound, so a batch loads its jobs (with project and
character) and their outputs in two queries, shares the models and each character's reference
embeddings, writes a chunk of jobs in one transaction (the lock-and-check, the scores, the gates,
a log line per job; each gate inserted once with its final details, never updated after) and
evaluates each phase gate once a chunk, with the outcome evaluating it after every job would have
had (``phases.phase_gates_after_scoring``).

Gate (``QualityGate`` stage ``post_gen``). Thresholds are read in one place each: similarity
through ``characters.selectors.similarity_threshold`` (the character's, else the project's),
the palette through :func:`palette_threshold` (likewise), the others from the project:

- ``character_similarity`` ≥ the character's similarity threshold (jobs with a character);
- ``aesthetic`` ≥ ``project.threshold_aesthetic``;
- ``palette_distance`` (ΔE in Lab, lower is better) ≤ :func:`palette_threshold`, only when the
  character is ``palette_gated``; it is measured (and shown) on every output of a character that
  has a palette, gated or not;
- clips only: ``subject_consistency`` (temporal coherence) ≥ ``project.threshold_temporal`` and
  ``motion_smoothness`` ≥ ``project.threshold_motion``;
- loops (job kind ``loop``, phase 2) also: ``loop_seamlessness`` passes when its ``seamless`` flag is
  set, i.e. the last → first step is at most ``SEAM_TOLERANCE`` (2) × the clip's median step + 1
  grey level. Its stored threshold is :data:`LOOP_SEAM_THRESHOLD` = 1 / ``SEAM_TOLERANCE`` = 0.5:
  with value = min(1, (median + 1) / (seam + 1)), ``value ≥ 0.5`` is the same rule, so the number
  and the verdict never disagree. Not a project setting: a seam twice as large as any other step is
  visible whatever the style;
- character sheets (kind ``character_sheet``) of a character: ``face_quality`` >
  ``project.threshold_face_quality`` (``quality.metrics.sheet``; the panel layout is the asset's
  ``sheet_layout``, else 4 × ceil(poses/4), else 4 × 2);
- videos and segments (phase 3): ``overall`` > ``project.threshold_overall``
  (``quality.metrics.composite``); loops carry ``overall`` too, ungated;
- an output that could not be read is a failed check (``media``).

The phase metrics (``face_quality``, ``overall``) pass strictly *above* their threshold, as the
phase gates are specified; the others at or above. The phase verdicts that orchestration asks
(``quality.services.phase_gates``) read these rows.

A gated metric that did not run (weights missing, no face, error) is *skipped*: listed in the
details with its reason and the command that fixes it. Outcome ``passed`` when every evaluated
check passed, ``failed`` when one failed, ``not_evaluated`` (``passed`` is NULL) when nothing could
be evaluated: never a pass by default.

Regeneration (``quality.services.regeneration``): a failed gate queues the job with a new seed
while its chain is shorter than ``project.max_regenerations``; a chain's best attempt is kept.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from characters.models import Character, CharacterVersion
from characters.selectors import similarity_threshold
from generation import events
from generation.models import Asset, Job, JobKind, JobStatus
from generation.services.jobs import job_log
from projects.models import Project
from quality.metrics import MetricModels, MetricResult, Status
from quality.metrics.sheet import sheet_layout
from quality.metrics.temporal import SEAM_TOLERANCE
from quality.models import GateStage, QualityGate, QualityScore
from quality.services import common
from quality.services.measure import Media, measure, read_media
from quality.services.phases import phase_gates_after_scoring
from quality.services.references import EmbeddedReferences, character_embed_references
from quality.services.regeneration import gate_conclude
from quality.services.verdicts import assets_quality_refresh

logger = logging.getLogger(__name__)

ANIMATED_KINDS = {JobKind.LOOP, JobKind.VIDEO, JobKind.SEGMENT}
LOOP_SEAM_THRESHOLD = 1.0 / SEAM_TOLERANCE
PHASE_KINDS_OVERALL = {JobKind.VIDEO, JobKind.SEGMENT}
# Metrics that pass strictly above their threshold (the phase gates' wording), and those that
# pass at or below it (a distance).
STRICT_METRICS = {"face_quality", "overall"}
LOWER_IS_BETTER = {"palette_distance"}
# A batch is written (one transaction) and its phase gates evaluated every CHUNK_JOBS jobs, or
# sooner when measuring them takes CHUNK_SECONDS (models on a CPU), so gates appear as it goes.
CHUNK_JOBS = 20
CHUNK_SECONDS = 2.0
# Job columns scoring never reads: JSON (the submitted graph runs to tens of kB) and free text.
# Regenerating, which needs them, loads the whole job again.
UNREAD_JOB_FIELDS = ("graph", "params", "overrides", "timings", "error_details", "prompt", "negative_prompt")


def palette_threshold(character: Character) -> float:
    """The largest mean ΔE a character's outputs may stray from its palette: its own, else its
    project's (one place)."""
    if character.palette_threshold is not None:
        return character.palette_threshold
    return character.project.threshold_palette


def gate_thresholds(
    project: Project,
    character: Character | None,
    *,
    animated: bool,
    loop: bool = False,
    sheet: bool = False,
    video: bool = False,
) -> dict[str, float]:
    """The gated metrics of one output and their thresholds (``loop``: a phase-2 loop job;
    ``sheet``: a character sheet; ``video``: a phase-3 video or segment)."""
    thresholds = {"aesthetic": project.threshold_aesthetic}
    if character is not None:
        thresholds["character_similarity"] = similarity_threshold(character)
        if character.palette_gated:
            thresholds["palette_distance"] = palette_threshold(character)
        if sheet:
            thresholds["face_quality"] = project.threshold_face_quality
    if animated:
        thresholds["subject_consistency"] = project.threshold_temporal
        thresholds["motion_smoothness"] = project.threshold_motion
        if loop:
            thresholds["loop_seamlessness"] = LOOP_SEAM_THRESHOLD
        if video:
            thresholds["overall"] = project.threshold_overall
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
    elif threshold is not None and result.ok and result.value is not None:  # an OK result has a value
        if result.metric in LOWER_IS_BETTER:
            passed = bool(result.value <= threshold)
        elif result.metric in STRICT_METRICS:
            passed = bool(result.value > threshold)
        else:
            passed = bool(result.value >= threshold)
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
            ratios.append(_ratio(row))
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


def _ratio(row: QualityScore) -> float:
    """How far a scored row is from its threshold, 1 = at it, above 1 = better."""
    value, threshold = float(row.value or 0.0), row.threshold or 0.0  # rows with a threshold only
    if row.metric in LOWER_IS_BETTER:  # a distance: half the allowed ΔE counts 2, capped there
        return min(2.0, threshold / value) if value > 0 else 2.0
    return value / threshold if threshold else value


def _read_asset(asset: Asset) -> Media:
    try:
        with asset.file.open("rb") as handle:
            data = handle.read()
    except OSError as exc:
        return Media(asset.pk, error=f"the file cannot be read ({exc.__class__.__name__})")
    return read_media(asset.pk, data)


@dataclass
class BatchScore:
    """What :func:`jobs_score` did, by job id: the post-generation gate (None for a job that is
    missing or not succeeded), or the exception that stopped the job's scoring."""

    gates: dict[int, QualityGate | None] = field(default_factory=dict)
    failed: dict[int, Exception] = field(default_factory=dict)


class _Shared:
    """What the jobs of one batch share: the models, and each reference set's embeddings (a
    character's, or a version's own)."""

    def __init__(self, models: MetricModels) -> None:
        self.models = models
        self._references: dict[tuple[int, int | None], EmbeddedReferences] = {}

    def references(self, character: Character, version: CharacterVersion | None = None) -> EmbeddedReferences:
        key = (character.pk, version.pk if version is not None else None)
        found = self._references.get(key)
        if found is None:
            found = character_embed_references(character=character, models=self.models, version=version)
            self._references[key] = found
        return found


def job_score(*, job_id: int, models: MetricModels | None = None) -> QualityGate | None:
    """Score a succeeded job's outputs, gate them, regenerate if needed; idempotent.

    Returns the post-generation gate (the existing one when the job was scored before), or None
    for a job that is missing or not succeeded. What raised while scoring is raised here.
    """
    batch = jobs_score(job_ids=[job_id], models=models)
    if job_id in batch.failed:
        raise batch.failed[job_id]
    return batch.gates.get(job_id)


def jobs_score(*, job_ids: Sequence[int], models: MetricModels | None = None) -> BatchScore:
    """:func:`job_score` for several jobs, in the order given, sharing what they can (see the
    module docstring: Cost).

    Jobs are measured a chunk at a time (:data:`CHUNK_JOBS` jobs, fewer when measuring them takes
    over :data:`CHUNK_SECONDS`), then the chunk is written in one transaction and its phase gates
    evaluated, so gates appear as the batch goes. A job whose scoring raises is reported in
    ``failed`` and the others are still scored; the caller decides what to say about it.
    """
    ids = list(dict.fromkeys(job_ids))
    jobs = {
        job.pk: job
        for job in Job.objects.select_related("project", "character__project", "version")
        .defer(*UNREAD_JOB_FIELDS)
        .annotate(gated=Exists(_gated()))
        .filter(pk__in=ids)
        .order_by()
    }
    batch = BatchScore()
    todo, scored_before = [], []
    for pk in ids:
        job = jobs.get(pk)
        if job is None or job.status != JobStatus.SUCCEEDED:
            batch.gates[pk] = None
        elif job.gated:
            scored_before.append(pk)
        else:
            todo.append(job)
    batch.gates.update(_existing_gates(scored_before))
    if not todo:
        return batch
    assets: dict[int | None, list[Asset]] = defaultdict(list)  # job_id is nullable
    for asset in (
        Asset.objects.filter(job__in=[job.pk for job in todo]).only("pk", "job_id", "file", "metadata").order_by("pk")
    ):
        assets[asset.job_id].append(asset)
    shared = _Shared(models or common.metric_models())
    chunk: list[_Measured] = []
    started = time.monotonic()
    for index, job in enumerate(todo):
        try:
            chunk.append(_measure(job, assets[job.pk], shared))
        except Exception as exc:  # one job's failure must not cost the others their scores
            batch.failed[job.pk] = exc
        last = index == len(todo) - 1
        if chunk and (last or len(chunk) >= CHUNK_JOBS or time.monotonic() - started >= CHUNK_SECONDS):
            _write_chunk(chunk, batch)
            chunk, started = [], time.monotonic()
    return batch


def _gated() -> QuerySet[QualityGate]:
    return QualityGate.objects.filter(job=OuterRef("pk"), stage=GateStage.POST_GEN)


def _existing_gates(job_ids: Sequence[int]) -> dict[int, QualityGate]:
    """Each job's post-generation gate (the first, should a job have two)."""
    found: dict[int, QualityGate] = {}
    if job_ids:
        for gate in QualityGate.objects.filter(job__in=job_ids, stage=GateStage.POST_GEN).order_by("created_at", "pk"):
            found.setdefault(gate.job_id, gate)
    return found


@dataclass
class _Measured:
    """A job measured and its score rows made, not written yet."""

    job: Job
    assets: list[Asset]
    rows: list[QualityScore]


def _sheet(job: Job, asset: Asset) -> tuple[int, int] | None:
    """A character sheet's panel layout: the asset's ``sheet_layout``, else from its poses."""
    if job.kind != JobKind.CHARACTER_SHEET or job.character_id is None:
        return None
    metadata = asset.metadata if isinstance(asset.metadata, dict) else {}
    layout = metadata.get("sheet_layout")
    if layout:
        return sheet_layout(layout)
    poses = (job.params or {}).get("poses")  # a deferred field: read for sheets only
    return sheet_layout(None, poses=len(poses) if isinstance(poses, list) else None)


def _measure(job: Job, assets: list[Asset], shared: _Shared) -> _Measured:
    media = [_read_asset(a) for a in assets]
    for m, asset in zip(media, assets, strict=True):
        m.sheet = _sheet(job, asset)
    # The heavy part runs outside any transaction; the writes are short.
    loop = job.kind == JobKind.LOOP
    results = (
        measure(
            media,
            models=shared.models,
            character=job.character,
            version=job.version if job.character_id else None,
            loop=loop,
            references=shared.references,
        )
        if media
        else {}
    )
    by_pk: dict[Hashable, Asset] = {a.pk: a for a in assets}
    rows: list[QualityScore] = []
    for m in media:
        animated = m.animated or job.kind in ANIMATED_KINDS
        thresholds = gate_thresholds(
            job.project,
            job.character,
            animated=animated,
            loop=loop,
            sheet=m.sheet is not None,
            video=job.kind in PHASE_KINDS_OVERALL,
        )
        rows.extend(
            score_row(by_pk[m.key], result, thresholds.get(result.metric), job.character_id)
            for result in results.get(m.key, ())
        )
    return _Measured(job, assets, rows)


def _write_chunk(chunk: list[_Measured], batch: BatchScore) -> None:
    """Write a chunk at once; should that fail, each job on its own, so one bad job costs only itself."""
    try:
        written = _write(chunk)
    except Exception as exc:
        if len(chunk) == 1:
            batch.failed[chunk[0].job.pk] = exc
            return
        written = {}
        for measured in chunk:
            for row in measured.rows:  # the rolled-back insert numbered them
                row.pk = None
                row._state.adding = True
            try:
                written.update(_write([measured]))
            except Exception as exc:  # as in jobs_score: reported, the others go on
                batch.failed[measured.job.pk] = exc
    fresh: list[tuple[Job, QualityGate]] = []
    for measured in chunk:
        if measured.job.pk in written:
            gate, new = written[measured.job.pk]
            batch.gates[measured.job.pk] = gate
            if new and gate is not None:  # a new gate is never None
                fresh.append((measured.job, gate))
    if fresh:
        phase_gates_after_scoring(scored=fresh)


def _write(chunk: list[_Measured]) -> dict[int, tuple[QualityGate | None, bool]]:
    """One transaction: (gate, whether this call made it) by job id; None for a deleted job.

    The jobs are locked first, so a re-delivered task that got to one of them first wins and its
    gate is returned instead.
    """
    out: dict[int, tuple[QualityGate | None, bool]] = {}
    with transaction.atomic():
        locked = dict(
            Job.objects.select_for_update()
            .filter(pk__in=[m.job.pk for m in chunk])
            .order_by("pk")
            .annotate(gated=Exists(_gated()))
            .values_list("pk", "gated")
        )
        existing = _existing_gates([pk for pk, gated in locked.items() if gated])
        fresh = []
        for m in chunk:
            if m.job.pk not in locked:
                out[m.job.pk] = (None, False)
            elif m.job.pk in existing:
                out[m.job.pk] = (existing[m.job.pk], False)
            else:
                fresh.append(m)
        QualityScore.objects.bulk_create([row for m in fresh for row in m.rows])
        assets_quality_refresh(asset_ids=[row.asset_id for m in fresh for row in m.rows])
        gates = [_gate(m) for m in fresh]
        QualityGate.objects.bulk_create(gates)  # once each, with its final details
        for m, gate in zip(fresh, gates, strict=True):
            _announce(m, gate)
            out[m.job.pk] = (gate, True)
    return out


def _gate(measured: _Measured) -> QualityGate:
    """The job's gate with its final details (not saved): logged, regenerated or chain ended."""
    job = measured.job
    details = gate_details(measured.rows)
    if not measured.assets:
        details["reason"] = "the job has no outputs"
    gate = QualityGate(
        job=job,
        stage=GateStage.POST_GEN,
        passed={"passed": True, "failed": False}.get(details["outcome"]),
        details=details,
    )
    job_log(job_id=job.pk, message=_summary(details))
    gate_conclude(job=job, gate=gate)
    return gate


def _announce(measured: _Measured, gate: QualityGate) -> None:
    job = measured.job
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
            for r in measured.rows
        ],
    )


def _summary(details: dict[str, Any]) -> str:
    text = f"post-generation gate: {details['outcome'].replace('_', ' ')}"
    if details["skipped_metrics"]:
        text += f" (skipped: {', '.join(details['skipped_metrics'])}"
        text += f"; fix: {' ; '.join(details['fix'])})" if details["fix"] else ")"
    return text
