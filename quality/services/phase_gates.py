"""Phase verdicts (C6) and the gates recorded before and after generation.

A job's outputs are scored once (``quality.services.scoring``: ``post_gen`` gate and one
``QualityScore`` per metric); a *phase verdict* reads those rows and says whether the job's best
output meets its phase's specification. Nothing here measures again.

Phase verdicts (:func:`phase_verdict`), thresholds from the project:

- **Phase 1, face quality** (``face_quality`` > ``project.threshold_face_quality``): the sheet is
  split into its panels (4 columns × ceil(n/4) rows, the asset's ``sheet_layout``), each panel's
  face is detected and compared with the character's references (the job's version's when it has
  its own); face quality = the share of panels whose face reaches the character's similarity
  threshold × the mean similarity of those panels (``quality.metrics.sheet``); a panel without a
  face is unmatched. A phase-1 still that is not a sheet is one panel: its
  ``character_similarity`` when it reaches the threshold, else 0. Phase 1 needs a character.
- **Phase 2, loop**: ``subject_consistency`` > ``threshold_temporal``, ``motion_smoothness`` >
  ``threshold_motion`` and ``loop_seamlessness`` seamless.
- **Phase 3, overall** (``overall`` > ``threshold_overall``): the weighted composite of the clip's
  metrics (``quality.metrics.composite``).

``score`` is the phase metric's value (phase 2: the weakest value ÷ threshold, ≥ 1 passing), and
empty when the verdict is not evaluated. The best output is the one that passes with the highest
score (else the highest score). Its
failed post-generation checks (aesthetic, palette, …) are failing reasons too. A phase metric that
did not run (weights missing, an error) makes the verdict *not evaluated* (``passed`` None) with
the reason and the command that fixes it (in ``reasons`` and ``fix``): never a silent pass. A
failed check fails the verdict even when another could not be evaluated.

Gates at three stages (``QualityGate.stage``): ``pre_gen`` (:func:`jobs_created`, generation's
``TOWER_ON_JOBS_CREATED``, after a submission commits: failed for a job pre-flight refused, with
its message; the image inputs the job was given; the reason it was forced past a closed phase
gate), ``post_gen`` (scoring) and ``final`` (:func:`gate_record_final`, the orchestration's last
check of a phase: the verdict as details).

Phase gate state (:func:`phase_gate_state`, shown by ``GET /api/v1/phases``): a staff override
wins; else, for a character, an orchestration of it whose run of that phase passed opens it; else
the window rule of ``quality.services.phases`` on the latest verdicts. :func:`phase_open_for`
(generation's ``TOWER_PHASE_CHECK``) answers None when a character's gate of phase N−1 is open,
else the reason a person reads ("Aiko's phase 1 gate is closed: 3 of the last 10 phase-1 outputs
passed (needs 80% of 10)").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import models, transaction

from characters.models import Character
from characters.selectors import similarity_threshold
from generation.models import Asset, Job, JobStatus
from generation.services.inputs import PHASE_OF_KIND
from projects.models import DEFAULT_PHASE_TEMPLATES, DEFAULT_SHEET_POSES, Project
from quality.metrics.composite import WEIGHTS as OVERALL_WEIGHTS
from quality.metrics.sheet import sheet_layout
from quality.models import GateStage, PhaseGate, PhaseRun, PhaseRunStatus, QualityGate, QualityScore
from quality.services.phases import verdicts_window

PHASE_NAMES = {1: "phase 1", 2: "phase 2", 3: "phase 3"}
# What a phase's outputs are called in a refusal ("3 of the last 10 sheets passed").
PHASE_OUTPUTS = {1: "phase-1 outputs", 2: "loops", 3: "videos"}


@dataclass(frozen=True)
class PhaseVerdict:
    """A phase's gate over a job's best output (``passed`` None: it could not be evaluated)."""

    passed: bool | None
    score: float | None
    reasons: list[str]
    checks: dict[str, dict[str, Any]]
    asset_id: int | None
    fix: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row_check(row: QualityScore, threshold: float, *, strict: bool = True) -> dict[str, Any]:
    check: dict[str, Any] = {"metric": row.metric, "value": row.value, "threshold": threshold, "status": row.status}
    if row.status != "ok" or row.value is None:
        check["passed"] = None
        check["reason"] = row.details.get("reason", "") or f"{row.metric} could not be measured ({row.status})"
        check["fix"] = row.details.get("fix", "")
    elif row.metric == "loop_seamlessness":
        check["passed"] = bool(row.details.get("seamless"))
    else:
        check["passed"] = bool(row.value > threshold) if strict else bool(row.value >= threshold)
    return check


def _phase_checks(phase: int, project: Project, rows: dict[str, QualityScore]) -> dict[str, dict[str, Any]]:
    """The phase's own checks of one output, by metric (a missing row is a check not evaluated)."""
    if phase == 1:
        wanted = {"face_quality": project.threshold_face_quality}
    elif phase == 2:
        wanted = {
            "subject_consistency": project.threshold_temporal,
            "motion_smoothness": project.threshold_motion,
            "loop_seamlessness": 0.5,
        }
    else:
        wanted = {"overall": project.threshold_overall}
    checks = {}
    for metric, threshold in wanted.items():
        row = rows.get(metric)
        if row is None and metric == "face_quality":
            row = _single_panel(rows.get("character_similarity"))
        if row is None:
            checks[metric] = {
                "metric": metric,
                "value": None,
                "threshold": threshold,
                "passed": None,
                "reason": f"{metric} was not measured for this output",
                "fix": "",
            }
        else:
            checks[metric] = _row_check(row, threshold)
    return checks


def _single_panel(similarity: QualityScore | None) -> QualityScore | None:
    """A still that is not a sheet as a one-panel sheet: its face quality is its similarity when
    the face matches, else 0 (no face, or too far; see the module docstring)."""
    if similarity is None:
        return None
    if similarity.status == "no_subject":
        return QualityScore(metric="face_quality", value=0.0, status="ok", details={"panels": 1, "matched": 0})
    if similarity.status != "ok" or similarity.value is None:
        return QualityScore(metric="face_quality", status=similarity.status, details=dict(similarity.details))
    matched = bool(similarity.passed)
    return QualityScore(
        metric="face_quality",
        value=similarity.value if matched else 0.0,
        status="ok",
        details={"panels": 1, "matched": int(matched)},
    )


def _score(checks: dict[str, dict[str, Any]]) -> float | None:
    """One number per output to rank by: the phase metric's value (phase 2: the weaker ratio)."""
    values = [
        c["value"] / c["threshold"] if c["threshold"] else c["value"]
        for c in checks.values()
        if c["value"] is not None and c["metric"] != "loop_seamlessness"
    ]
    return min(values) if values else None


def phase_verdict(*, job: Job, phase: int) -> PhaseVerdict:
    """The gate of ``phase`` over ``job``'s best scored output; see the module docstring."""
    project = job.project
    post_gen = QualityGate.objects.filter(job=job, stage=GateStage.POST_GEN).order_by("created_at", "pk").first()
    if post_gen is None:
        return PhaseVerdict(None, None, [f"job {job.pk} has not been scored yet"], {}, None)
    if phase == 1 and job.character_id is None:
        return PhaseVerdict(None, None, ["a phase-1 face quality gate needs a character"], {}, None)
    assets = list(Asset.objects.filter(job=job).order_by("pk").values_list("pk", flat=True))
    if not assets:
        return PhaseVerdict(False, None, [f"job {job.pk} has no outputs"], {}, None)
    rows: dict[int, dict[str, QualityScore]] = {pk: {} for pk in assets}
    for row in QualityScore.objects.filter(asset__in=assets).order_by("pk"):
        rows[row.asset_id][row.metric] = row
    candidates = []
    for pk in assets:
        checks = _phase_checks(phase, project, rows[pk])
        evaluated = all(c["passed"] is not None for c in checks.values())
        best = evaluated and all(c["passed"] for c in checks.values())
        candidates.append((best, evaluated, _score(checks) or 0.0, pk, checks))
    _, evaluated, _, asset_id, checks = max(candidates, key=lambda c: (c[0], c[1], c[2]))
    reasons, fixes = [], []
    failed = False
    for check in checks.values():
        if check["passed"] is None:
            if check.get("fix"):
                fixes.append(check["fix"])
                # Some metrics' reasons already end with the command; say it once.
                fix_text = "" if check["fix"] in check["reason"] else f"; fix: {check['fix']}"
                reasons.append(f"{check['reason']}{fix_text}")
            else:
                reasons.append(check["reason"])
        elif not check["passed"]:
            failed = True
            reasons.append(_failed(check))
    for check in post_gen.details.get("checks", []):
        if check.get("asset") == asset_id and check.get("passed") is False and check["metric"] not in checks:
            failed = True
            reasons.append("post-generation: " + _failed(check))
    # A failed check fails the verdict whatever else could not be measured; otherwise a phase
    # metric that did not run leaves it not evaluated.
    passed: bool | None = False if failed else (True if evaluated else None)
    score = _score(checks) if phase == 2 else next(iter(checks.values()))["value"]
    if passed is None:
        score = None  # a part of the checks is not a score of the phase (phase 2 would show one ratio)
    return PhaseVerdict(passed, score, reasons, checks, asset_id, sorted(set(fixes)))


def _failed(check: dict[str, Any]) -> str:
    value, threshold = check.get("value"), check.get("threshold")
    if check["metric"] == "loop_seamlessness":
        return "the loop is not seamless (its last → first step stands out)"
    if check["metric"] == "media":
        return "an output could not be read"
    if value is None or threshold is None:
        return f"{check['metric']} failed"
    if check["metric"] == "palette_distance":
        return f"palette ΔE {value:.3g} > {threshold:.3g}"
    return f"{check['metric']} {value:.3g} is not above {threshold:.3g}"


@transaction.atomic
def gate_record_final(*, job: Job, verdict: PhaseVerdict) -> QualityGate:
    """Write the job's ``final`` gate: the phase verdict as the orchestration concluded it."""
    return QualityGate.objects.create(job=job, stage=GateStage.FINAL, passed=verdict.passed, details=verdict.as_dict())


@dataclass(frozen=True)
class GateState:
    """Whether a phase gate is open now, and why (``reason`` is None when open)."""

    is_open: bool
    pass_ratio: float | None
    sample_size: int
    overridden: bool
    reason: str | None
    opened_by: str | None  # "override", "window", "orchestration" or None


def phase_gate_state(*, project: Project, phase: int, character: Character | None = None) -> GateState:
    """The state of the gate that lets ``project`` (or ``character``) leave ``phase``: a staff
    override wins; else an orchestration of the character that passed the phase opens it; else
    the window rule (``quality.services.phases``) on the latest verdicts, read now."""
    gate = PhaseGate.objects.filter(project=project, character=character, phase=phase).first()
    verdicts = verdicts_window(project=project, phase=phase, character=character)
    passed, size = sum(verdicts), len(verdicts)
    ratio = passed / size if size else None
    who = f"{character.name}'s" if character is not None else f"{project.name}'s"
    if gate is not None and gate.overridden_by_id is not None:
        reason = None if gate.is_open else f"{who} phase {phase} gate was closed by hand: {gate.override_reason}"
        return GateState(gate.is_open, ratio, size, True, reason, "override" if gate.is_open else None)
    if (
        character is not None
        and PhaseRun.objects.filter(
            orchestration__character=character, phase=phase, status=PhaseRunStatus.PASSED
        ).exists()
    ):
        return GateState(True, ratio, size, False, None, "orchestration")
    if size >= project.phase_window and (ratio or 0.0) >= project.phase_pass_ratio:
        return GateState(True, ratio, size, False, None, "window")
    reason = (
        f"{who} phase {phase} gate is closed: {passed} of the last {size} {PHASE_OUTPUTS[phase]} passed "
        f"(needs {project.phase_pass_ratio:.0%} of {project.phase_window})"
    )
    return GateState(False, ratio, size, False, reason, None)


def phase_open_for(*, project: Project, character: Character | None, phase: int) -> str | None:
    """None when ``character`` may start ``phase`` work, else the reason a person can read
    (``TOWER_PHASE_CHECK``): the character's gate of phase-1 must be open (:func:`phase_gate_state`)."""
    if character is None or phase <= 1:
        return None
    return phase_gate_state(project=project, phase=phase - 1, character=character).reason


# The phases as the designs specify them: what each makes, and its default template's key in
# ``Project.phase_templates``.
PHASE_SPECS: dict[int, dict[str, Any]] = {
    1: {"key": "sheet", "name": "Character sheet", "frames": 1, "fps": None, "width": 1024, "height": 1024},
    2: {"key": "loop", "name": "Animation loop", "frames": 48, "fps": 24, "width": 512, "height": 512},
    3: {"key": "video", "name": "Video", "frames": 120, "fps": 24, "width": 1024, "height": 576},
}


def _field_default(name: str) -> float:
    field = Project._meta.get_field(name)
    assert isinstance(field, models.Field)  # a threshold column, not a relation
    return float(field.get_default())


def _gate_metrics(phase: int, project: Project | None, character: Character | None) -> list[dict[str, Any]]:
    """The gate's metrics of ``phase`` with the thresholds that apply (the project's, or the defaults)."""

    def threshold(name: str) -> float:
        return getattr(project, name) if project is not None else _field_default(name)

    if phase == 1:
        similarity = similarity_threshold(character) if character is not None else threshold("threshold_similarity")
        return [
            {
                "metric": "face_quality",
                "comparison": ">",
                "threshold": threshold("threshold_face_quality"),
                "definition": "share of the sheet's panels whose face matches the references at ≥ the similarity "
                "threshold × their mean similarity",
                "similarity_threshold": similarity,
            }
        ]
    if phase == 2:
        return [
            {"metric": "subject_consistency", "comparison": ">", "threshold": threshold("threshold_temporal")},
            {"metric": "motion_smoothness", "comparison": ">", "threshold": threshold("threshold_motion")},
            {"metric": "loop_seamlessness", "comparison": "seamless", "threshold": None},
        ]
    return [
        {
            "metric": "overall",
            "comparison": ">",
            "threshold": threshold("threshold_overall"),
            "definition": "weighted composite of the clip's metrics (weights renormalised without a character)",
            "weights": dict(OVERALL_WEIGHTS),
        }
    ]


def phases_spec(*, project: Project | None = None, character: Character | None = None) -> list[dict[str, Any]]:
    """The three phases with their specifications, and with ``project`` each gate's state (the
    character's gates with ``character``)."""
    templates = {**DEFAULT_PHASE_TEMPLATES, **((project.phase_templates or {}) if project is not None else {})}
    out = []
    for phase, spec in PHASE_SPECS.items():
        item: dict[str, Any] = {
            "phase": phase,
            **spec,
            "job_kinds": [kind for kind, p in PHASE_OF_KIND.items() if p == phase],
            "default_template": templates.get(spec["key"], ""),
            "gate": {"metrics": _gate_metrics(phase, project, character)},
        }
        if phase == 1:
            poses = list(project.sheet_poses if project is not None else DEFAULT_SHEET_POSES)
            columns, rows = sheet_layout(None, poses=len(poses))
            item["poses"] = poses
            item["layout"] = {"columns": columns, "rows": rows}
        if project is not None:
            item["state"] = asdict(phase_gate_state(project=project, phase=phase, character=character))
        out.append(item)
    return out


def jobs_created(*, job_ids: Sequence[int]) -> list[QualityGate]:
    """Write the ``pre_gen`` gate of each new job (once): pre-flight and its image inputs."""
    jobs = Job.objects.filter(pk__in=job_ids).exclude(gates__stage=GateStage.PRE_GEN).order_by("pk")
    gates = []
    for job in jobs.only("pk", "status", "error_type", "error_message", "params", "forced_reason", "phase"):
        refused = job.status == JobStatus.FAILED and job.error_type == "preflight"
        inputs = [
            {k: item.get(k) for k in ("parameter", "name", "path", "sha256")}
            for item in (job.params or {}).get("inputs", [])
        ]
        details: dict[str, Any] = {
            "preflight": {"passed": not refused, "message": job.error_message if refused else ""},
            "inputs": inputs,
            "phase": job.phase,
        }
        if job.forced_reason:
            details["forced_reason"] = job.forced_reason
        gates.append(QualityGate(job=job, stage=GateStage.PRE_GEN, passed=not refused, details=details))
    with transaction.atomic():
        QualityGate.objects.bulk_create(gates)
    return gates
