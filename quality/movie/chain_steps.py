"""The steps of a scene run (see :mod:`quality.movie.chain`); each is called holding the run's row lock."""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from characters.models import Character
from generation import events
from generation.models import Asset, InputImage, Job, WorkflowTemplate
from generation.services.jobs import JobError, job_log
from generation.workflow import draw_seed
from projects.models import Scene, SceneStatus
from quality.models import JoinKind, QualityScore, SceneRun, Segment, SegmentStatus

logger = logging.getLogger(__name__)

FORCE_REASON = "force_reason"  # a key of Segment.params that is no workflow parameter (see scene_generate)


def attempt_limit(run: SceneRun) -> int:
    """Attempts a segment gets: the first and ``project.max_join_regenerations`` more."""
    return 1 + run.scene.episode.project.max_join_regenerations


def first_character(scene: Scene) -> Character | None:
    """The scene's first character (in the order they were added)."""
    through = Character.scenes.through
    row = through.objects.filter(scene_id=scene.pk).order_by("pk").values_list("character_id", flat=True).first()
    return Character.objects.filter(pk=row).first() if row is not None else None


def previous_scene_segment(scene: Scene) -> Segment | None:
    """The last segment of the newest complete run of the scene before this one in its episode, if any."""
    earlier = Scene.objects.filter(episode_id=scene.episode_id, number__lt=scene.number).order_by("-number").first()
    if earlier is None:
        return None
    return (
        Segment.objects.filter(
            scene=earlier, status=SegmentStatus.COMPLETE, run__status=SegmentStatus.COMPLETE, last_frame__isnull=False
        )
        .select_related("last_frame", "output")
        .order_by("-run_id", "-number")
        .first()
    )


def reference_as_input(*, scene: Scene, user: User | None, character: Character) -> InputImage | None:
    """The character's best reference, stored as an input image of the project (what segment 1 starts from)."""
    from characters.selectors import primary_reference
    from generation.services.inputs import input_image_create

    reference = primary_reference(character)
    if reference is None:
        return None
    with reference.image.open("rb") as handle:
        data = handle.read()
    image, _ = input_image_create(
        project=scene.episode.project,
        user=user,
        upload=io.BytesIO(data),
        original_name=f"{character.name} reference {reference.pk}.png",
    )
    return image


def submit_attempt(run: SceneRun, segment: Segment) -> str:
    """Queue the segment's next attempt (a new seed, its first frame, its params); returns a refusal or ""."""
    from generation.services.inputs import image_source_from, template_image_inputs
    from generation.services.submit import jobs_create

    template: WorkflowTemplate | None = run.template
    if template is None:
        return f"the scene's segment template no longer exists (segment {segment.number})"
    inputs = template_image_inputs(template)
    if not inputs:
        return f"template {template.slug!r} has no image input to start segment {segment.number} from"
    if segment.first_frame is None:
        return f"segment {segment.number} has no first frame"
    scene = run.scene
    used = set(segment.jobs.values_list("seed", flat=True))
    seed = draw_seed()
    while seed in used:
        seed = draw_seed()
    overrides = dict(segment.params or {})
    force_reason = str(overrides.pop(FORCE_REASON, "") or "")
    try:
        [job] = jobs_create(
            user=run.created_by,
            project=scene.episode.project,
            template=template,
            character=first_character(scene),
            scene=scene,
            prompt=segment.motion_prompt,
            overrides=overrides,
            seeds=[seed],
            force_reason=force_reason,
            images={inputs[0]: image_source_from(segment.first_frame)},
        )
    except JobError as exc:
        return f"segment {segment.number} ({template.slug}) was refused: {exc}"
    segment.jobs.add(job)
    segment.job = job
    segment.attempts += 1
    segment.seed = job.seed
    segment.status = SegmentStatus.RUNNING
    segment.save(update_fields=["job", "attempts", "seed", "status", "updated_at"])
    job_log(
        job_id=job.pk,
        message=f"attempt {segment.attempts} of {attempt_limit(run)} of segment {segment.number} "
        f"of scene {scene.pk} (run {run.pk})",
    )
    if job.status == "failed":
        return f"segment {segment.number} ({template.slug}) cannot run: {job.error_message}"
    return ""


def segment_output(job: Job) -> Asset | None:
    """The clip a segment job made: its output with the most frames (a template may also save stills)."""
    return Asset.objects.filter(job=job).order_by("-frames", "pk").first()


def latest_score(asset: Asset, metric: str) -> float | None:
    row = QualityScore.objects.filter(asset=asset, metric=metric).order_by("-pk").values_list("value", flat=True)
    return row.first()


def cut_last_frame(run: SceneRun, segment: Segment, output: Asset) -> InputImage:
    """The output's last frame, stored as an input image of the project (raises FrameError, ValidationError)."""
    from generation.film.frames import last_frame_png
    from generation.services.inputs import input_image_create

    data = last_frame_png(output.file.path)
    image, _ = input_image_create(
        project=run.scene.episode.project,
        user=run.created_by,
        upload=io.BytesIO(data),
        original_name=f"scene {run.scene_id} segment {segment.number} last frame.png",
    )
    return image


def join_before(run: SceneRun, segment: Segment) -> tuple[Asset | None, str]:
    """The clip the segment's join starts from, and the join's kind (none for a film's very first segment)."""
    if segment.number > 1:
        earlier = run.segments.filter(number=segment.number - 1).select_related("output").first()
        return (earlier.output if earlier else None), JoinKind.SEGMENT
    previous = previous_scene_segment(run.scene)
    return (previous.output if previous else None), JoinKind.SCENE


def announce(event_type: str, run: SceneRun, **data: Any) -> None:
    scene = run.scene
    events.movie_event(
        event_type,
        project_id=scene.episode.project_id,
        episode_id=scene.episode_id,
        scene_id=scene.pk,
        user_id=run.created_by_id,
        run=run.pk,
        status=run.status,
        **data,
    )


def fail_run(run: SceneRun, segment: Segment | None, reasons: Sequence[str]) -> str:
    """The segment (if any) and the run fail with ``reasons``; the scene is failed; later segments stay pending."""
    now = timezone.now()
    if segment is not None:
        segment.status = SegmentStatus.FAILED
        segment.save(update_fields=["status", "updated_at"])
    run.status, run.finished_at, run.reasons = SegmentStatus.FAILED, now, list(reasons)
    run.save(update_fields=["status", "finished_at", "reasons"])
    Scene.objects.filter(pk=run.scene_id).update(status=SceneStatus.FAILED, updated_at=now)
    logger.info("scene run %s failed: %s", run.pk, "; ".join(reasons))
    return "failed: " + "; ".join(reasons)
