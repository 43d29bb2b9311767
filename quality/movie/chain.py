"""Scene chaining: a scene is generated as N segments in order, each starting from its predecessor's last frame.

The same engine shape as :mod:`quality.services.orchestration`: state lives in the database only
(``SceneRun`` and its ``Segment`` rows), every step locks the run's row and acts only on the current
segment's newest job, so a re-delivered call, a late one or one after a killed worker finds the
same state and does the same thing (or nothing).

Flow. :func:`scene_generate` validates the request, plans N segments (:mod:`quality.movie.plan`),
writes the run and its segments and submits segment 1 in one transaction (a request that cannot
start is a :class:`SceneError`, a 400, nothing written). Segment 1 starts from the previous scene's
last completed segment's last frame when the episode has one before it, else from the scene's first
character's best reference (stored as a project ``InputImage``). Each time a segment's job is scored
(or fails in generation) :func:`scene_step` concludes the attempt:

- the output's last frame is cut (``generation.film.frames.last_frame_png``) and stored as an input
  image (``Segment.last_frame``); its scores are copied (``temporal_ssim`` → frame consistency,
  ``motion_smoothness``, ``overall``);
- the join into it (segment k-1 → k, or the previous scene → segment 1) is scored and gated by
  ``quality.movie.joins.join_evaluate``; every attempt writes a feedback row
  (``quality.movie.feedback.feedback_record``);
- a failing join with attempts left (1 + ``project.max_join_regenerations``) submits the segment
  again with ``quality.movie.learning.adjusted_params`` and a new seed; a join that could not be
  evaluated does not hold the chain (recorded as ``join_passed`` empty);
- a passing (or first) segment is complete (``segment_complete``; ``join_evaluated`` comes from the
  join's evaluation), and the next
  segment is submitted starting from its last frame; after the last, the scene is complete
  (``scene_complete``; the same event with status ``failed`` and the reasons when it fails);
- a failed or cancelled job is a failed attempt: another while attempts remain, else the segment
  and the scene fail with the reasons.

A failed segment (its job, or its join out of attempts) is tried again with :func:`segment_retry`:
the same run goes on from it with a fresh attempt budget, the complete segments before it kept.

Who calls the step: ``quality.tasks`` after scoring (:func:`scenes_after_scoring`), on a failed job
(:func:`scene_run_of_job` → the ``quality.tasks.scene_step`` task) and on reconcile
(:func:`scenes_reconcile`: every running run whose current segment has no open job).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from generation.film.frames import FrameError
from generation.models import Job, JobKind, JobStatus
from generation.services.jobs import job_log
from projects.models import Scene, SceneStatus
from quality.models import GateStage, QualityGate, SceneRun, Segment, SegmentStatus
from quality.movie import chain_steps as steps
from quality.movie.plan import segments_plan
from quality.services.common import QualityError
from quality.services.orchestration import OPEN_JOB_STATUSES, template_for

logger = logging.getLogger(__name__)

DEFAULT_SEGMENT_TEMPLATE = "svd-segment"  # a shipped segment template on core nodes
MOTION_PROMPT_MAX_LENGTH = 2_000


class SceneError(QualityError):
    """A scene cannot be generated as asked (the message says why); the API answers 400."""


@transaction.atomic
def scene_generate(
    *,
    scene: Scene,
    user: User | None,
    template: str | None = None,
    segments: int | None = None,
    motion_prompt: str = "",
    force_reason: str = "",
) -> SceneRun:
    """Plan the scene's segments, write the run, and submit segment 1 (see the module docstring).

    Raises :class:`SceneError` (nothing written) for a scene with no character, a running scene, an
    unknown template or one that is not a segment template with an image input, a plan out of bounds,
    or a first segment generation refuses (a character whose phase-2 gate is closed, unless an editor
    gives ``force_reason``: kept with the segments' params and recorded on every job).
    """
    locked = Scene.objects.select_for_update(of=("self",)).select_related("episode__project__style").get(pk=scene.pk)
    project = locked.episode.project
    if (
        locked.status == SceneStatus.RUNNING
        or SceneRun.objects.filter(scene=locked, status=SegmentStatus.RUNNING).exists()
    ):
        raise SceneError(f"scene {locked.number} is already being generated: wait for it to finish")
    earlier = Scene.objects.filter(episode_id=locked.episode_id, number__lt=locked.number).order_by("-number").first()
    if earlier is not None and earlier.status == SceneStatus.RUNNING:
        raise SceneError(
            f"scene {earlier.number} before it is still being generated: wait for it, so that this scene "
            "starts from its last frame"
        )
    character = steps.first_character(locked)
    if character is None:
        raise SceneError("the scene has no character: add one (characters) before generating it")
    if len(motion_prompt or "") > MOTION_PROMPT_MAX_LENGTH:
        raise SceneError(f"the motion prompt is limited to {MOTION_PROMPT_MAX_LENGTH:,} characters")
    slug = (template or DEFAULT_SEGMENT_TEMPLATE).strip()
    chosen = template_for(project=project, slug=slug)
    if chosen is None:
        raise SceneError(f"no workflow template {slug!r} in this project")
    if chosen.kind != JobKind.SEGMENT:
        raise SceneError(f"a scene needs a template of kind segment; {slug!r} is kind {chosen.kind}")
    from generation.services.inputs import template_image_inputs

    if not template_image_inputs(chosen):
        raise SceneError(f"template {slug!r} has no image input: a segment must start from the previous last frame")
    plan = segments_plan(template=chosen, project=project, duration_seconds=locked.duration_seconds, segments=segments)
    previous = steps.previous_scene_segment(locked)
    first_frame = previous.last_frame if previous is not None else None
    if first_frame is None:
        first_frame = steps.reference_as_input(scene=locked, user=user, character=character)
    if first_frame is None:
        raise SceneError(f"{character.name} has no reference image for the scene's first frame: upload one")
    from quality.movie.learning import suggested_params

    params = suggested_params(project=project, template=chosen) or {}
    if force_reason.strip():
        # SceneRun has no column for it yet: it rides in the segments' params (submit_attempt takes it out).
        params[steps.FORCE_REASON] = force_reason.strip()[:MOTION_PROMPT_MAX_LENGTH]
    run = SceneRun.objects.create(
        scene=locked, template=chosen, created_by=user, segments_planned=plan.segments, status=SegmentStatus.RUNNING
    )
    Segment.objects.bulk_create(
        [
            Segment(run=run, scene=locked, number=n, motion_prompt=motion_prompt or "", params=dict(params))
            for n in range(1, plan.segments + 1)
        ]
    )
    first = run.segments.get(number=1)
    first.first_frame = first_frame
    first.save(update_fields=["first_frame", "updated_at"])
    locked.status = SceneStatus.RUNNING
    locked.save(update_fields=["status", "updated_at"])
    run.scene = locked
    refusal = steps.submit_attempt(run, first)
    if refusal:
        raise SceneError(refusal)
    return run


@transaction.atomic
def segment_retry(*, segment: Segment, user: User | None) -> SceneRun:
    """Try a failed segment again (a failed job, or a join out of attempts) and let the chain go on from it.

    The earlier complete segments are kept; the segment gets a fresh attempt budget and a new seed,
    starting from its predecessor's last frame (segment 1: the previous scene's last frame, else its
    own first frame, else the first character's reference); the run and the scene run again and the
    later segments follow as usual. Locks the scene's row then the run's, as :func:`scene_generate`
    and :func:`scene_step` do, so a double click finds the segment running and is refused.

    Raises :class:`SceneError` (nothing changed) when the user cannot write to the project, the
    segment is not failed or not of the scene's newest run, the scene (or the one before it, for
    segment 1) is being generated, or the attempt cannot be submitted.
    """
    from projects.selectors import project_user_can_write

    scene = Scene.objects.select_for_update(of=("self",)).select_related("episode__project").get(pk=segment.scene_id)
    if user is None or not project_user_can_write(project=scene.episode.project, user=user):
        raise SceneError("only the project's owner and editors can retry a segment")
    run = _lock(segment.run_id)
    current = run.segments.select_related("first_frame").get(pk=segment.pk)
    if (
        scene.status == SceneStatus.RUNNING
        or SceneRun.objects.filter(scene=scene, status=SegmentStatus.RUNNING).exists()
    ):
        raise SceneError(f"scene {scene.number} is being generated: wait for it to finish before retrying a segment")
    newest = SceneRun.objects.filter(scene=scene).order_by("-created_at", "-id").values_list("pk", flat=True).first()
    if newest != run.pk:
        raise SceneError(f"segment {current.number} is of an earlier run of the scene: retry the newest run's")
    if current.status != SegmentStatus.FAILED:
        raise SceneError(f"segment {current.number} is {current.status}: only a failed segment can be retried")
    if current.number == 1:
        earlier = Scene.objects.filter(episode_id=scene.episode_id, number__lt=scene.number).order_by("-number").first()
        if earlier is not None and earlier.status == SceneStatus.RUNNING:
            raise SceneError(f"scene {earlier.number} before it is still being generated: wait for it")
        previous = steps.previous_scene_segment(scene)
        first_frame = previous.last_frame if previous is not None else current.first_frame
        character = steps.first_character(scene)
        if first_frame is None and character is not None:
            first_frame = steps.reference_as_input(scene=scene, user=user, character=character)
    else:
        before = run.segments.filter(number=current.number - 1).select_related("last_frame").first()
        if before is None or before.status != SegmentStatus.COMPLETE or before.last_frame is None:
            raise SceneError(
                f"segment {current.number - 1} before it is not complete: it has no last frame to start from"
            )
        first_frame = before.last_frame
    if first_frame is None:
        raise SceneError(f"segment {current.number} has no first frame to start from")
    # A fresh attempt budget; the failed attempts stay in ``jobs`` and the feedback rows.
    current.first_frame, current.attempts = first_frame, 0
    current.output = current.last_frame = None
    current.frame_consistency = current.motion_smoothness = current.overall = None
    current.join_ssim = current.join_flow = current.join_passed = None
    current.save()
    run.status, run.finished_at, run.reasons = SegmentStatus.RUNNING, None, []
    run.save(update_fields=["status", "finished_at", "reasons"])
    scene.status = SceneStatus.RUNNING
    scene.save(update_fields=["status", "updated_at"])
    run.scene = scene
    refusal = steps.submit_attempt(run, current)
    if refusal:
        raise SceneError(refusal)
    return run


def scenes_after_scoring(*, job_ids: Iterable[int]) -> list[str]:
    """Step every running scene run whose current segment's job is one of ``job_ids`` (just scored)."""
    ids = list(dict.fromkeys(job_ids))
    if not ids:
        return []
    pairs = (
        Segment.objects.filter(job_id__in=ids, status=SegmentStatus.RUNNING, run__status=SegmentStatus.RUNNING)
        .values_list("run_id", "job_id")
        .distinct()
    )
    return [scene_step(run_id=run_id, job_id=job_id) for run_id, job_id in sorted(set(pairs))]


def scene_run_of_job(*, job_id: int) -> int | None:
    """The running scene run whose running segment's current attempt is this job, if any (one query)."""
    return (
        Segment.objects.filter(job_id=job_id, status=SegmentStatus.RUNNING, run__status=SegmentStatus.RUNNING)
        .values_list("run_id", flat=True)
        .first()
    )


def scenes_reconcile() -> list[str]:
    """Step every running scene run (a killed worker, a lost task, a job that ended unseen)."""
    outcomes = []
    for pk in SceneRun.objects.filter(status=SegmentStatus.RUNNING).values_list("pk", flat=True):
        try:
            outcomes.append(scene_step(run_id=pk))
        except Exception:  # one broken run must not stop the others' recovery
            logger.warning("stepping scene run %s failed", pk, exc_info=True)
            outcomes.append("error")
    return outcomes


def _attempt_open(run_id: int) -> bool:
    status = (
        Segment.objects.filter(run_id=run_id, run__status=SegmentStatus.RUNNING, status=SegmentStatus.RUNNING)
        .values_list("job__status", flat=True)
        .first()
    )
    return status in OPEN_JOB_STATUSES


def _lock(run_id: int) -> SceneRun:
    try:
        return (
            SceneRun.objects.select_for_update(of=("self",))
            .select_related("scene__episode__project", "template", "created_by")
            .get(pk=run_id)
        )
    except SceneRun.DoesNotExist:
        raise Http404("No such scene run") from None


def scene_step(*, run_id: int, job_id: int | None = None) -> str:
    """Conclude the current segment's newest attempt if it has ended, and act on it.

    ``job_id``: the job the caller saw end; nothing is done unless it is still the current attempt.
    Returns what it did, for logs and tests.
    """
    if job_id is None and _attempt_open(run_id):
        return "attempt running"  # reconcile's common case, answered without a write lock
    with transaction.atomic():
        run = _lock(run_id)
        if run.status != SegmentStatus.RUNNING:
            return f"run {run.status}"
        segment = run.segments.filter(status=SegmentStatus.RUNNING).select_related("first_frame").first()
        if segment is None:
            return _next_or_complete(run, None)
        latest = segment.job
        if latest is None:
            refusal = steps.submit_attempt(run, segment)
            return steps.fail_run(run, segment, [refusal]) if refusal else "submitted"
        if job_id is not None and latest.pk != job_id:
            return "not the current attempt"
        if latest.status in OPEN_JOB_STATUSES:
            return "attempt running"
        if latest.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            what = "failed" if latest.status == JobStatus.FAILED else "was cancelled"
            reason = f"segment {segment.number} attempt {segment.attempts} (job {latest.pk}) {what}"
            if latest.error_message:
                reason += f": {latest.error_message}"
            return _attempt_failed(run, segment, [reason])
        if not QualityGate.objects.filter(job=latest, stage=GateStage.POST_GEN).exists():
            return "attempt not scored yet"
        return _conclude(run, segment, latest)


def _attempt_failed(run: SceneRun, segment: Segment, reasons: list[str], *, params: dict | None = None) -> str:
    if segment.attempts < steps.attempt_limit(run):
        if params is not None:
            segment.params = params
            segment.save(update_fields=["params", "updated_at"])
        refusal = steps.submit_attempt(run, segment)
        if refusal:
            return _fail(run, segment, [*reasons, refusal])
        return f"segment {segment.number} attempt {segment.attempts - 1} failed; attempt {segment.attempts} submitted"
    summary = f"segment {segment.number} failed after {segment.attempts} attempt{'s' if segment.attempts != 1 else ''}"
    return _fail(run, segment, [summary, *reasons])


def _fail(run: SceneRun, segment: Segment | None, reasons: list[str]) -> str:
    outcome = steps.fail_run(run, segment, reasons)
    steps.announce("scene_complete", run, reasons=list(reasons))
    return outcome


def _conclude(run: SceneRun, segment: Segment, job: Job) -> str:
    from quality.movie.feedback import feedback_record
    from quality.movie.joins import join_evaluate

    output = steps.segment_output(job)
    if output is None:
        return _attempt_failed(run, segment, [f"segment {segment.number} attempt {segment.attempts} made no output"])
    try:
        last = steps.cut_last_frame(run, segment, output)
    except (FrameError, OSError, ValueError) as exc:
        reason = f"segment {segment.number}'s last frame could not be cut from output {output.pk}: {exc}"
        return _attempt_failed(run, segment, [reason])
    segment.output, segment.last_frame, segment.prompt_id = output, last, job.prompt_id or ""
    segment.seed = job.seed
    segment.frame_consistency = steps.latest_score(output, "temporal_ssim")
    segment.motion_smoothness = steps.latest_score(output, "motion_smoothness")
    segment.overall = steps.latest_score(output, "overall")
    before, kind = steps.join_before(run, segment)
    join = None
    if before is not None:
        join = join_evaluate(
            scene=run.scene, segment=segment, before=before, after=output, kind=kind, attempt=segment.attempts
        )
        # (join_evaluate also sends ``join_evaluated``)
        segment.join_ssim, segment.join_flow, segment.join_passed = join.ssim, join.flow_discontinuity, join.passed
    segment.save()
    passed = join.passed if join is not None else True
    feedback_record(segment=segment, job=job, attempt=segment.attempts, join=join, passed=passed)
    if join is not None and join.passed is False:
        from quality.movie.learning import adjusted_params

        reasons = [f"segment {segment.number}'s join failed its gate (attempt {segment.attempts})"]
        reasons += [str(r) for r in (join.details or {}).get("reasons", [])]
        assert run.template is not None  # submit_attempt refused a run without one
        params = adjusted_params(
            template=run.template, params=dict(segment.params or {}), join=join, attempt=segment.attempts
        )
        return _attempt_failed(run, segment, reasons, params=params)
    segment.status = SegmentStatus.COMPLETE
    segment.save(update_fields=["status", "updated_at"])
    job_log(job_id=job.pk, message=f"scene {run.scene_id}: segment {segment.number} complete")
    steps.announce(
        "segment_complete",
        run,
        segment=segment.number,
        job=job.pk,
        asset=output.pk,
        last_frame=last.pk,
        join_passed=segment.join_passed,
    )
    return _next_or_complete(run, segment)


def _next_or_complete(run: SceneRun, done: Segment | None) -> str:
    """Submit the first pending segment from its predecessor's last frame, or complete the scene."""
    following = run.segments.filter(status=SegmentStatus.PENDING).order_by("number").first()
    if following is None:
        now = timezone.now()
        run.status, run.finished_at = SegmentStatus.COMPLETE, now
        run.save(update_fields=["status", "finished_at"])
        Scene.objects.filter(pk=run.scene_id).update(status=SceneStatus.COMPLETE, updated_at=now)
        steps.announce("scene_complete", run, segments=run.segments_planned)
        return "complete"
    before = done or run.segments.filter(number=following.number - 1).first()
    if before is None or before.last_frame_id is None:
        return _fail(run, following, [f"segment {following.number} has no last frame to start from"])
    following.first_frame_id = before.last_frame_id
    following.save(update_fields=["first_frame", "updated_at"])
    refusal = steps.submit_attempt(run, following)
    if refusal:
        return _fail(run, following, [refusal])
    return f"segment {before.number} complete; segment {following.number} submitted"
