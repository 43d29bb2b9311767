"""Phase gates: a project (or one of its characters) may leave phase N for N+1.

Rule. The sample is the last ``project.phase_window`` *evaluated* post-generation gates of jobs
made in phase N (for a character gate: jobs of that character); one job's gate is one scored
output. Gates that evaluated nothing (models missing) are left out: they say nothing about quality.
The gate opens when the window is full and at least ``project.phase_pass_ratio`` of it passed; it
closes again when that stops being true. It is evaluated after every scoring and on demand
(``POST /api/v1/quality/phase-gate/{phase}``).

Override. Staff may open or close a gate by hand with a reason (:func:`phase_gate_override`);
while overridden, evaluation still records the ratio and sample size but leaves ``is_open`` as
the person set it.

Auto-advance. When the project-wide gate of phase N (not a character's) is open, by evaluation
or override, and the project is in phase N < 3, the project moves to phase N+1. It never moves
back on its own: closing a gate stops the next advance, it does not undo one.

After scoring (:func:`phase_gates_after_scoring`), the gates of a batch of newly scored jobs are
evaluated once each, with the outcome of evaluating after every job: one query reads the latest
window plus the batch's own verdicts, the window after each job is a slice of it, the project
advances if the gate was open after any of them, and the row keeps the state after the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from characters.models import Character
from generation.models import Job
from projects.models import Phase, Project
from quality.models import GateStage, PhaseGate, QualityGate
from quality.services.common import QualityError


def _gate_row(project: Project, phase: int, character: Character | None) -> PhaseGate:
    gate, _ = PhaseGate.objects.select_for_update().get_or_create(project=project, character=character, phase=phase)
    return gate


def _check(project: Project, phase: int, character: Character | None) -> None:
    if phase not in Phase.values:
        raise QualityError(f"phase must be one of {', '.join(map(str, Phase.values))}")
    if character is not None and character.project_id != project.pk:
        raise QualityError("that character belongs to another project")


def _advance(project: Project, gate: PhaseGate, *, was_open: bool | None = None) -> None:
    opened = gate.is_open if was_open is None else was_open
    if gate.character_id is None and opened and gate.phase < Phase.VIDEO:
        Project.objects.filter(pk=project.pk, phase=gate.phase).update(phase=gate.phase + 1)


def _verdicts(project: Project, phase: int, character: Character | None, count: int) -> list[bool]:
    """The ``count`` latest evaluated post-generation verdicts of the phase's jobs, newest first."""
    jobs = Job.objects.filter(project=project, phase=phase)
    if character is not None:
        jobs = jobs.filter(character=character)
    return [
        bool(passed)  # never None here (passed__isnull=False)
        for passed in QualityGate.objects.filter(job__in=jobs, stage=GateStage.POST_GEN, passed__isnull=False)
        .order_by("-created_at", "-pk")
        .values_list("passed", flat=True)[:count]
    ]


def verdicts_window(*, project: Project, phase: int, character: Character | None = None) -> list[bool]:
    """The verdicts the gate of ``phase`` is evaluated on now (the latest window), newest first."""
    return _verdicts(project, phase, character, project.phase_window)


def _opens(project: Project, verdicts: Sequence[bool]) -> bool:
    ratio = sum(verdicts) / len(verdicts) if verdicts else None
    return len(verdicts) >= project.phase_window and (ratio or 0.0) >= project.phase_pass_ratio


@transaction.atomic
def phase_gate_evaluate(*, project: Project, phase: int, character: Character | None = None) -> PhaseGate:
    """Recompute the gate of ``phase`` from recent scored outputs; see the module docstring."""
    _check(project, phase, character)
    verdicts = _verdicts(project, phase, character, project.phase_window)
    gate = _gate_row(project, phase, character)
    gate.sample_size = len(verdicts)
    gate.pass_ratio = sum(verdicts) / len(verdicts) if verdicts else None
    gate.evaluated_at = timezone.now()
    if gate.overridden_by_id is None:
        gate.is_open = _opens(project, verdicts)
    gate.save(update_fields=["sample_size", "pass_ratio", "evaluated_at", "is_open"])
    _advance(project, gate)
    return gate


@transaction.atomic
def phase_gate_override(
    *,
    project: Project,
    phase: int,
    is_open: bool,
    reason: str,
    user: User,
    character: Character | None = None,
) -> PhaseGate:
    """Open or close a gate by hand; only staff, and only with a reason (which is recorded)."""
    _check(project, phase, character)
    if not getattr(user, "is_staff", False):
        raise QualityError("only staff can override a phase gate")
    reason = (reason or "").strip()
    if not reason:
        raise QualityError("say why the gate is opened or closed by hand")
    gate = _gate_row(project, phase, character)
    gate.is_open = is_open
    gate.override_reason = reason
    gate.overridden_by = user
    gate.full_clean(exclude=["project", "character", "overridden_by"], validate_unique=False)
    gate.save(update_fields=["is_open", "override_reason", "overridden_by"])
    _advance(project, gate)
    return gate


@dataclass
class _Scored:
    """One phase gate's newly scored jobs: their verdicts in the order they were gated."""

    project: Project
    phase: int
    character: Character | None
    verdicts: list[bool | None] = field(default_factory=list)


def phase_gates_after_scoring(*, scored: Sequence[tuple[Job, QualityGate]]) -> list[PhaseGate]:
    """The project's gate (and each character's) of the phases of newly scored jobs, given as
    (job, its new post-generation gate) in the order they were gated; see the module docstring."""
    groups: dict[tuple[int, int, int | None], _Scored] = {}
    for job, post_gen in scored:
        for character in (None, job.character) if job.character_id else (None,):
            key = (job.project_id, job.phase, character.pk if character else None)
            group = groups.setdefault(key, _Scored(job.project, job.phase, character))
            group.verdicts.append(post_gen.passed)
    return [_evaluate_after(group) for group in groups.values()]


@transaction.atomic
def _evaluate_after(scored: _Scored) -> PhaseGate:
    project, phase, character = scored.project, scored.phase, scored.character
    _check(project, phase, character)
    new = sum(v is not None for v in scored.verdicts)
    # Newest first: the batch's ``new`` verdicts (unless another worker's came in between, which
    # only blurs the intermediate windows), then the window before the batch.
    latest = _verdicts(project, phase, character, project.phase_window + new)
    windows, given = [], 0
    for verdict in scored.verdicts:
        given += verdict is not None
        windows.append(latest[new - given : new - given + project.phase_window])
    verdicts = windows[-1]  # = latest[:window], what phase_gate_evaluate reads now
    gate = _gate_row(project, phase, character)
    gate.sample_size = len(verdicts)
    gate.pass_ratio = sum(verdicts) / len(verdicts) if verdicts else None
    gate.evaluated_at = timezone.now()
    was_open = gate.is_open
    if gate.overridden_by_id is None:
        gate.is_open = _opens(project, verdicts)
        was_open = any(_opens(project, w) for w in windows)
    gate.save(update_fields=["sample_size", "pass_ratio", "evaluated_at", "is_open"])
    _advance(project, gate, was_open=was_open)
    return gate
