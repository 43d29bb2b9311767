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
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
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


def _advance(project: Project, gate: PhaseGate) -> None:
    if gate.character_id is None and gate.is_open and gate.phase < Phase.VIDEO:
        Project.objects.filter(pk=project.pk, phase=gate.phase).update(phase=gate.phase + 1)


@transaction.atomic
def phase_gate_evaluate(*, project: Project, phase: int, character: Character | None = None) -> PhaseGate:
    """Recompute the gate of ``phase`` from recent scored outputs; see the module docstring."""
    _check(project, phase, character)
    jobs = Job.objects.filter(project=project, phase=phase)
    if character is not None:
        jobs = jobs.filter(character=character)
    window = project.phase_window
    verdicts = list(
        QualityGate.objects.filter(job__in=jobs, stage=GateStage.POST_GEN, passed__isnull=False)
        .order_by("-created_at", "-pk")
        .values_list("passed", flat=True)[:window]
    )
    gate = _gate_row(project, phase, character)
    gate.sample_size = len(verdicts)
    gate.pass_ratio = sum(verdicts) / len(verdicts) if verdicts else None
    gate.evaluated_at = timezone.now()
    if gate.overridden_by_id is None:
        gate.is_open = len(verdicts) >= window and (gate.pass_ratio or 0.0) >= project.phase_pass_ratio
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
    user: AbstractBaseUser,
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
    gate.overridden_by = user  # type: ignore[assignment]
    gate.full_clean(exclude=["project", "character", "overridden_by"], validate_unique=False)
    gate.save(update_fields=["is_open", "override_reason", "overridden_by"])
    _advance(project, gate)
    return gate


def phase_gates_after_scoring(*, job: Job) -> list[PhaseGate]:
    """The project's gate (and the character's) for the job's phase, after its scoring."""
    gates = [phase_gate_evaluate(project=job.project, phase=job.phase)]
    if job.character_id:
        gates.append(phase_gate_evaluate(project=job.project, phase=job.phase, character=job.character))
    return gates
