"""Orchestration: one request runs a character through sheet → loop → video, each phase behind its gate.

State lives in the database only (``Orchestration`` and its three ``PhaseRun`` rows), so a worker
that dies loses nothing: whatever step it was taking is redone by the next call that finds the
orchestration in the same state.

Flow. :func:`orchestration_start` validates the request, writes the orchestration and its phase
runs and submits phase 1's first attempt in one transaction (a request that cannot start is a
:class:`OrchestrationError`, nothing written). A phase runs *attempts*: one job each, a new seed
each, at most ``1 + project.max_regenerations``. Each time an attempt's job is scored (or fails or
is cancelled in generation, never scored) :func:`orchestration_step` concludes it:

- its phase verdict (``quality.services.phase_gates.phase_verdict``) passes → the ``final`` gate
  is recorded on the job, the verdict's asset is the phase's best asset and is handed to the next
  phase through the next template's first image input (contract C5): from a sheet its best pose
  (one panel), from a loop its best frame, cut out and stored as a project ``InputImage``
  (``PhaseRun.input_image``; which panel or frame in ``PhaseRun.handoff``; ``input_asset`` stays
  the asset it came from); with ``auto_advance`` the
  next phase's first attempt is submitted at once, else the orchestration *waits* (the next phase
  run ``awaiting_approval``) until :func:`orchestration_advance`; after phase 3 it is complete;
- it fails (or the job failed in generation) → another attempt while attempts remain; when none
  remain, the final gate is recorded and the orchestration *fails* with the gate's reasons;
- it could not be evaluated (``passed`` None: a metric's weights missing) → the orchestration fails
  with that reason (a new seed cannot bring weights), unless ``project.advance_unevaluated``, when
  the phase passes as "not evaluated" (said in its gate);
- a refusal at submission (a job error, every backend refusing the graph at pre-flight) fails the
  orchestration with that reason: another seed would be refused the same way.

The orchestration's attempts *are* its regeneration: scoring's automatic regeneration
(``quality.services.regeneration``) leaves the jobs of a phase run alone. Phase 2 and 3 jobs are
submitted with ``phase=`` and pass generation's phase check (``TOWER_PHASE_CHECK`` =
``phase_gates.phase_open_for``) because this orchestration's earlier phase run is ``passed`` when
they are submitted (same transaction); nothing is forced.

Who calls the step (each idempotent: the step locks the orchestration row, and acts only on the
current phase's newest job while that phase runs, so a re-delivered call finds nothing to do):

- ``quality.tasks.score_job`` / ``score_succeeded`` → :func:`orchestrations_after_scoring` with the
  ids they scored;
- ``settings.TOWER_ON_JOB_FAILED`` → ``quality.tasks.job_failed`` → enqueues
  ``quality.tasks.orchestration_step`` for a job of a running phase;
- ``settings.TOWER_ON_RECONCILE`` → ``quality.tasks.orchestrations_reconcile`` →
  :func:`orchestrations_reconcile`: every running orchestration whose current phase has no live
  job (a worker killed between scoring and step, a cancelled job, a lost task) is stepped.

Hand-over timing: the step stamps the passed ``PhaseRun.finished_at`` and creates the next phase's
first job in the same transaction (``bench/orchestration.py`` measures from one to that job's prompt running).

Events (``generation.events.orchestration_event``, after commit, to the project's and the
orchestration's groups): ``orchestration_progress`` (an attempt submitted, waiting, advanced,
cancelled), ``phase_passed``, ``orchestration_complete``, ``orchestration_failed``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from characters.models import Character
from generation import events
from generation.models import LIVE_STATUSES, Job, JobKind, JobStatus, WorkflowTemplate
from generation.services.jobs import JobError, job_log
from generation.workflow import draw_seed
from projects.models import DEFAULT_PHASE_TEMPLATES, Mode, Project
from projects.selectors import project_user_can_write
from quality.models import (
    GateStage,
    Orchestration,
    OrchestrationStatus,
    PhaseRun,
    PhaseRunStatus,
    QualityGate,
)
from quality.services.common import QualityError
from quality.services.handoff import handoff_image

logger = logging.getLogger(__name__)

# Phase → the key of its template in ``templates`` and the template kind it needs.
PHASE_KEYS = {1: "sheet", 2: "loop", 3: "video"}
PHASE_KINDS = {1: JobKind.CHARACTER_SHEET, 2: JobKind.LOOP, 3: JobKind.VIDEO}
LAST_PHASE = 3
OPEN_JOB_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SCORING, *LIVE_STATUSES})
ACTIVE = (OrchestrationStatus.RUNNING, OrchestrationStatus.WAITING)
PROMPT_MAX_LENGTH = 20_000


class OrchestrationError(QualityError):
    """An orchestration cannot be started or moved as asked (the message says why)."""


def template_for(*, project: Project, slug: str) -> WorkflowTemplate | None:
    """The project's own template of that slug, else the shared one."""
    found = WorkflowTemplate.objects.filter(Q(project=project) | Q(project__isnull=True), slug=slug)
    return sorted(found, key=lambda t: t.project_id is None)[0] if found else None


def phase_templates(*, project: Project, templates: Mapping[str, Any] | None) -> dict[int, WorkflowTemplate]:
    """The template of each phase: ``templates`` over the project's defaults; raises on a bad one."""
    given = dict(templates or {})
    unknown = sorted(set(given) - set(PHASE_KEYS.values()))
    if unknown:
        raise OrchestrationError(
            f"unknown template key(s) {', '.join(map(repr, unknown))}: give 'sheet', 'loop' and/or 'video'"
        )
    defaults = {**DEFAULT_PHASE_TEMPLATES, **(project.phase_templates or {})}
    chosen: dict[int, WorkflowTemplate] = {}
    for phase, key in PHASE_KEYS.items():
        slug = given.get(key) or defaults.get(key)
        if not isinstance(slug, str) or not slug.strip():
            raise OrchestrationError(f"templates.{key} must be a workflow template's slug")
        template = template_for(project=project, slug=slug.strip())
        if template is None:
            raise OrchestrationError(f"no workflow template {slug!r} for the {key} phase (templates.{key})")
        if template.kind != PHASE_KINDS[phase]:
            raise OrchestrationError(
                f"the {key} phase needs a template of kind {PHASE_KINDS[phase].value}; {slug!r} is kind {template.kind}"
            )
        chosen[phase] = template
    return chosen


@transaction.atomic
def orchestration_start(
    *,
    user: User | None,
    project: Project,
    character: Character,
    prompt: str = "",
    auto_advance: bool = True,
    templates: Mapping[str, Any] | None = None,
    mode: str = Mode.DRAFT,
) -> Orchestration:
    """Write the orchestration and its three phase runs, and submit phase 1's first attempt.

    Raises :class:`OrchestrationError` (nothing written) for a character of another project, a
    template that is unknown or of the wrong kind, or a first attempt generation refuses.
    """
    if character.project_id != project.pk:
        raise OrchestrationError("that character belongs to another project")
    if mode not in Mode.values:
        raise OrchestrationError(f"mode must be one of {', '.join(Mode.values)}")
    if len(prompt or "") > PROMPT_MAX_LENGTH:
        raise OrchestrationError(f"the prompt is limited to {PROMPT_MAX_LENGTH:,} characters")
    chosen = phase_templates(project=project, templates=templates)
    orchestration = Orchestration.objects.create(
        project=project,
        character=character,
        created_by=user,
        prompt=prompt or "",
        mode=mode,
        auto_advance=auto_advance,
        templates={PHASE_KEYS[phase]: template.slug for phase, template in chosen.items()},
    )
    runs = PhaseRun.objects.bulk_create([PhaseRun(orchestration=orchestration, phase=phase) for phase in PHASE_KEYS])
    first = runs[0]
    first.status, first.started_at = PhaseRunStatus.RUNNING, timezone.now()
    first.save(update_fields=["status", "started_at"])
    refusal = _submit_attempt(orchestration, first)
    if refusal:
        raise OrchestrationError(refusal)
    return orchestration


@transaction.atomic
def orchestration_advance(*, orchestration: Orchestration, user: User) -> Orchestration:
    """Approve the next phase of an orchestration that waits for it (editors only)."""
    locked = _lock(orchestration.pk)
    _check_may_write(locked.project, user)
    if locked.status != OrchestrationStatus.WAITING:
        raise OrchestrationError(f"only an orchestration waiting for approval can advance; this one is {locked.status}")
    run = locked.phase_runs.get(phase=locked.phase)
    if run.status != PhaseRunStatus.AWAITING_APPROVAL:  # pragma: no cover - written together with WAITING
        raise OrchestrationError(f"phase {run.phase} is {run.status}, not awaiting approval")
    _set(locked, status=OrchestrationStatus.RUNNING)
    _begin(locked, run, note=f"phase {run.phase} approved by {getattr(user, 'username', 'someone')}")
    return locked


@transaction.atomic
def orchestration_cancel(*, orchestration: Orchestration, user: User) -> Orchestration:
    """Stop an orchestration: its open phase runs are cancelled and their queued or running jobs too."""
    from generation.services.submit import job_cancel

    locked = _lock(orchestration.pk)
    _check_may_write(locked.project, user)
    if locked.status not in ACTIVE:
        raise OrchestrationError(f"a {locked.status} orchestration cannot be cancelled")
    now = timezone.now()
    open_runs = locked.phase_runs.filter(
        status__in=[PhaseRunStatus.PENDING, PhaseRunStatus.RUNNING, PhaseRunStatus.AWAITING_APPROVAL]
    )
    for job in Job.objects.filter(phase_runs__in=open_runs, status__in=OPEN_JOB_STATUSES).distinct():
        with contextlib.suppress(JobError):  # it ended meanwhile: nothing to stop
            job_cancel(job=job, user=user)
    open_runs.update(status=PhaseRunStatus.CANCELLED, finished_at=now)
    who = getattr(user, "username", "someone")
    _set(locked, status=OrchestrationStatus.CANCELLED, finished_at=now, reasons=[f"cancelled by {who}"])
    _announce("orchestration_progress", locked)
    return locked


def orchestrations_after_scoring(*, job_ids: Iterable[int]) -> list[str]:
    """Step every running orchestration whose current attempt is one of ``job_ids`` (just scored)."""
    pairs = _current_pairs(job_ids)
    return [orchestration_step(orchestration_id=o, job_id=j) for o, j in pairs]


def orchestration_of_job(*, job_id: int) -> int | None:
    """The running orchestration whose running phase has this job, if any (one query)."""
    return (
        PhaseRun.objects.filter(
            jobs=job_id, status=PhaseRunStatus.RUNNING, orchestration__status=OrchestrationStatus.RUNNING
        )
        .values_list("orchestration_id", flat=True)
        .first()
    )


def orchestrations_reconcile() -> list[str]:
    """Step every running orchestration whose current phase has no open job (see the module docstring)."""
    ids = Orchestration.objects.filter(status=OrchestrationStatus.RUNNING).values_list("pk", flat=True)
    outcomes = []
    for pk in ids:
        try:
            outcomes.append(orchestration_step(orchestration_id=pk))
        except Exception:  # one broken orchestration must not stop the others' recovery
            logger.warning("stepping orchestration %s failed", pk, exc_info=True)
            outcomes.append("error")
    return outcomes


def orchestration_step(*, orchestration_id: int, job_id: int | None = None) -> str:
    """Conclude the current phase's newest attempt if it has ended, and act on the verdict.

    ``job_id``: the job the caller saw end; the step does nothing unless it is still the current
    phase's newest attempt (a re-delivered or late call). Returns what it did, for logs and tests.
    """
    if job_id is None and _attempt_open(orchestration_id):
        return "attempt running"  # reconcile's common case, answered without a write lock
    with transaction.atomic():
        orchestration = _lock(orchestration_id)
        if orchestration.status != OrchestrationStatus.RUNNING:
            return f"orchestration {orchestration.status}"
        run = orchestration.phase_runs.get(phase=orchestration.phase)
        if run.status != PhaseRunStatus.RUNNING:
            return f"phase {run.phase} {run.status}"
        latest = run.jobs.defer("graph").order_by("-pk").first()
        if latest is None:
            refusal = _submit_attempt(orchestration, run)
            return _fail(orchestration, run, [refusal]) if refusal else "submitted"
        if job_id is not None and latest.pk != job_id:
            return "not the current attempt"
        if latest.status in OPEN_JOB_STATUSES:
            return "attempt running"
        if latest.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            what = "failed" if latest.status == JobStatus.FAILED else "was cancelled"
            reason = f"attempt {run.attempts} (job {latest.pk}) {what}"
            if latest.error_message:
                reason += f": {latest.error_message}"
            return _attempt_failed(orchestration, run, latest, None, [reason])
        if not QualityGate.objects.filter(job=latest, stage=GateStage.POST_GEN).exists():
            return "attempt not scored yet"
        from quality.services.phase_gates import phase_verdict

        verdict = phase_verdict(job=latest, phase=run.phase)
        return _conclude(orchestration, run, latest, verdict)


# --- The engine's steps (called holding the orchestration's row lock) ---------------------------


def _check_may_write(project: Project, user: User) -> None:
    """Editors and owners of the project; superusers too (the admin shows them every project)."""
    if not (getattr(user, "is_superuser", False) or project_user_can_write(project=project, user=user)):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("You have read-only access to this project")


def _lock(pk: int) -> Orchestration:
    try:
        return Orchestration.objects.select_for_update(of=("self",)).select_related("project", "character").get(pk=pk)
    except Orchestration.DoesNotExist:
        from django.http import Http404

        raise Http404("No such orchestration") from None


def _attempt_open(orchestration_id: int) -> bool:
    """Whether the current phase's newest job is still queued or running (one read, no lock)."""
    newest = (
        Job.objects.filter(
            phase_runs__orchestration_id=orchestration_id,
            phase_runs__orchestration__status=OrchestrationStatus.RUNNING,
            phase_runs__status=PhaseRunStatus.RUNNING,
        )
        .order_by("-pk")
        .values_list("status", flat=True)
        .first()
    )
    return newest in OPEN_JOB_STATUSES


def _set(orchestration: Orchestration, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(orchestration, name, value)
    orchestration.save(update_fields=[*fields, "updated_at"])


def _current_pairs(job_ids: Iterable[int]) -> list[tuple[int, int]]:
    """(orchestration id, job id) for each job that belongs to a running orchestration's running phase."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return []
    through = PhaseRun.jobs.through
    rows = through.objects.filter(
        job_id__in=ids,
        phaserun__status=PhaseRunStatus.RUNNING,
        phaserun__orchestration__status=OrchestrationStatus.RUNNING,
    ).values_list("phaserun__orchestration_id", "job_id")
    return sorted(set(rows))


def _submit_attempt(orchestration: Orchestration, run: PhaseRun) -> str:
    """Queue the phase's next attempt (a new seed) and count it; returns a refusal or ""."""
    from generation.services.inputs import image_source_from, template_image_inputs
    from generation.services.submit import jobs_create

    slug = (orchestration.templates or {}).get(PHASE_KEYS[run.phase], "")
    template = template_for(project=orchestration.project, slug=slug)
    if template is None:
        return f"the {PHASE_KEYS[run.phase]} phase's template {slug!r} no longer exists"
    images = {}
    if run.phase > 1:
        if run.input_asset_id is None:
            return f"phase {run.phase} has no input: phase {run.phase - 1} handed on no output"
        parameters = template_image_inputs(template)
        if parameters:
            # The best pose or frame cut from the asset when there is one, else the whole asset.
            source = run.input_image or run.input_asset
            assert source is not None  # input_asset_id is set (checked above)
            images[parameters[0]] = image_source_from(source)
    used = set(run.jobs.values_list("seed", flat=True))
    seed = draw_seed()
    while seed in used:
        seed = draw_seed()
    try:
        [job] = jobs_create(
            user=orchestration.created_by,
            project=orchestration.project,
            template=template,
            mode=orchestration.mode,
            character=orchestration.character,
            prompt=orchestration.prompt,
            seeds=[seed],
            images=images or None,
            phase=run.phase,
        )
    except JobError as exc:
        return f"phase {run.phase} ({template.slug}) was refused: {exc}"
    run.jobs.add(job)
    run.attempts += 1
    run.save(update_fields=["attempts"])
    limit = 1 + orchestration.project.max_regenerations
    job_log(
        job_id=job.pk,
        message=f"attempt {run.attempts} of {limit} of orchestration {orchestration.pk}'s phase {run.phase}",
    )
    if job.status == JobStatus.FAILED:
        return f"phase {run.phase} ({template.slug}) cannot run: {job.error_message}"
    _announce("orchestration_progress", orchestration, attempt=run.attempts, job=job.pk)
    return ""


def _begin(orchestration: Orchestration, run: PhaseRun, *, note: str = "") -> str:
    run.status, run.started_at = PhaseRunStatus.RUNNING, timezone.now()
    run.save(update_fields=["status", "started_at"])
    refusal = _submit_attempt(orchestration, run)
    if refusal:
        return _fail(orchestration, run, [refusal])
    return note or f"phase {run.phase} started"


def _gate_of(verdict: Any, job: Job | None, attempt: int, **extra: Any) -> dict[str, Any]:
    body = dataclasses.asdict(verdict) if verdict is not None else {"passed": False, "reasons": [], "checks": {}}
    body.update(job=job.pk if job else None, attempt=attempt, **extra)
    return body


def _conclude(orchestration: Orchestration, run: PhaseRun, job: Job, verdict: Any) -> str:
    from quality.services.phase_gates import gate_record_final

    if verdict.passed is None and not orchestration.project.advance_unevaluated:
        gate_record_final(job=job, verdict=verdict)
        reasons = [f"phase {run.phase}'s gate could not be evaluated: {r}" for r in verdict.reasons or ["no reason"]]
        run.gate = _gate_of(verdict, job, run.attempts)
        return _fail(orchestration, run, reasons)
    if verdict.passed is False:
        return _attempt_failed(orchestration, run, job, verdict, list(verdict.reasons))
    gate_record_final(job=job, verdict=verdict)
    not_evaluated = verdict.passed is None
    run.gate = _gate_of(verdict, job, run.attempts, not_evaluated=not_evaluated)
    if not_evaluated:
        run.gate["reasons"] = ["passed as not evaluated (the project lets unevaluated gates advance)", *verdict.reasons]
    run.status, run.finished_at = PhaseRunStatus.PASSED, timezone.now()
    run.best_asset_id = verdict.asset_id
    run.save(update_fields=["gate", "status", "finished_at", "best_asset"])
    job_log(job_id=job.pk, message=f"orchestration {orchestration.pk}: phase {run.phase} passed")
    _announce("phase_passed", orchestration, passed_phase=run.phase, best_asset=run.best_asset_id)
    if run.phase == LAST_PHASE:
        _set(orchestration, status=OrchestrationStatus.COMPLETE, finished_at=timezone.now())
        _announce("orchestration_complete", orchestration)
        return "complete"
    following = orchestration.phase_runs.get(phase=run.phase + 1)
    if run.best_asset_id is None:
        return _fail(orchestration, following, [f"phase {run.phase} passed but left no output to hand on"])
    following.input_asset_id = run.best_asset_id
    handed_on = following.input_asset
    assert handed_on is not None  # its id was just set from best_asset_id
    following.input_image, following.handoff = handoff_image(
        project=orchestration.project, user=orchestration.created_by, phase=run.phase, asset=handed_on
    )
    following.save(update_fields=["input_asset", "input_image", "handoff"])
    if orchestration.auto_advance:
        _set(orchestration, phase=following.phase)
        return _begin(orchestration, following, note=f"phase {run.phase} passed; phase {following.phase} started")
    following.status = PhaseRunStatus.AWAITING_APPROVAL
    following.save(update_fields=["status"])
    _set(orchestration, phase=following.phase, status=OrchestrationStatus.WAITING)
    _announce("orchestration_progress", orchestration)
    return f"phase {run.phase} passed; waiting for approval"


def _attempt_failed(orchestration: Orchestration, run: PhaseRun, job: Job, verdict: Any, reasons: Sequence[str]) -> str:
    limit = 1 + orchestration.project.max_regenerations
    run.gate = _gate_of(verdict, job, run.attempts, reasons=list(reasons))
    run.save(update_fields=["gate"])
    if run.attempts < limit:
        refusal = _submit_attempt(orchestration, run)
        if refusal:
            return _fail(orchestration, run, [*reasons, refusal])
        return f"attempt {run.attempts - 1} failed; attempt {run.attempts} submitted"
    if verdict is not None:
        from quality.services.phase_gates import gate_record_final

        gate_record_final(job=job, verdict=verdict)
    summary = f"phase {run.phase} failed after {run.attempts} attempt{'s' if run.attempts != 1 else ''}"
    return _fail(orchestration, run, [summary, *reasons])


def _fail(orchestration: Orchestration, run: PhaseRun, reasons: Sequence[str]) -> str:
    now = timezone.now()
    run.status, run.finished_at = PhaseRunStatus.FAILED, now
    if not run.gate:
        run.gate = {"passed": False, "reasons": list(reasons), "checks": {}}
    run.save(update_fields=["status", "finished_at", "gate"])
    orchestration.phase_runs.filter(status__in=[PhaseRunStatus.PENDING, PhaseRunStatus.AWAITING_APPROVAL]).update(
        status=PhaseRunStatus.CANCELLED
    )
    _set(orchestration, status=OrchestrationStatus.FAILED, finished_at=now, reasons=list(reasons))
    _announce("orchestration_failed", orchestration, reasons=list(reasons))
    return "failed: " + "; ".join(reasons)


def _announce(event_type: str, orchestration: Orchestration, **data: Any) -> None:
    events.orchestration_event(
        event_type,
        orchestration_id=orchestration.pk,
        project_id=orchestration.project_id,
        user_id=orchestration.created_by_id,
        phase=orchestration.phase,
        status=orchestration.status,
        **data,
    )
