"""Scene chaining on the fake ComfyUI: segments in order, each from its predecessor's last frame (issue 20 item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation.film.frames import last_frame
from generation.models import InputImage, JobStatus
from generation.services.completion import job_fail
from generation.services.inputs import image_source_from, upload_name
from projects.models import SceneStatus
from quality import tasks as quality_tasks
from quality.models import JoinEvaluation, QualityFeedback, SceneRun, Segment
from quality.movie.chain import SceneError, scene_generate
from quality.movie.plan import MAX_SEGMENTS, PlanError, segment_length, segments_plan
from tests.generation.engine_helpers import shipped
from tests.quality.movie_chain_helpers import (
    SEGMENT,
    cast,
    drive_scene,
    movie_project,
    received_first_frame,
    scene_with,
)
from tests.quality.scoring_helpers import listen, wait_for_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner):
    return movie_project(owner)


@pytest.fixture
def kai(project, owner):
    return cast(project, owner)


@pytest.fixture
def frames(project):
    return segment_length(template=shipped(SEGMENT), project=project)[0]


def seconds(segments: int, frames: int, fps: float = 12.0) -> float:
    """A duration that plans exactly ``segments`` segments."""
    return (frames + (segments - 1) * (frames - 1)) / fps


def test_plan_counts_segments_from_duration_frames_and_fps(project):
    template = shipped(SEGMENT)
    frames, fps = segment_length(template=template, project=project)
    assert frames > 1 and fps == 12.0  # the template's frames; its fps follows the style
    one = segments_plan(template=template, project=project, duration_seconds=frames / fps)
    assert (one.segments, one.frames, one.fps, one.explicit) == (1, frames, fps, False)
    # the second segment adds frames - 1 (it starts on the first one's last frame)
    assert segments_plan(template=template, project=project, duration_seconds=(2 * frames - 1) / fps).segments == 2
    assert segments_plan(template=template, project=project, duration_seconds=(2 * frames) / fps).segments == 3
    explicit = segments_plan(template=template, project=project, duration_seconds=600, segments=3)
    assert (explicit.segments, explicit.explicit) == (3, True)
    for bad in (0, MAX_SEGMENTS + 1, True, 2.5):
        with pytest.raises(PlanError, match="segments must be"):
            segments_plan(template=template, project=project, duration_seconds=1.0, segments=bad)
    with pytest.raises(PlanError, match="at most 64"):
        segments_plan(template=template, project=project, duration_seconds=frames * 70 / fps)


def test_a_scene_runs_its_segments_in_order_each_from_the_last_frame_before(
    fake, engine, project, kai, owner, channel_layer, frames
):
    scene = scene_with(project, [kai], duration=seconds(2, frames))
    channel = listen(channel_layer, f"scene.{scene.pk}")

    run = scene_generate(scene=scene, user=owner, template=SEGMENT, motion_prompt="walks to the window")
    scene.refresh_from_db()
    assert (run.segments_planned, scene.status) == (2, SceneStatus.RUNNING)
    assert list(run.segments.values_list("number", "status")) == [(1, "running"), (2, "pending")]

    run = drive_scene(run, engine)

    assert run.status == "complete", run.reasons
    scene.refresh_from_db()
    assert scene.status == SceneStatus.COMPLETE
    first, second = Segment.objects.filter(run=run).order_by("number")
    for segment in (first, second):
        assert segment.status == "complete" and segment.attempts == 1
        job = segment.job
        assert job.status == JobStatus.SUCCEEDED and job.scene_id == scene.pk and job.character_id == kai.pk
        assert (segment.seed, segment.prompt_id) == (job.seed, job.prompt_id) and segment.prompt_id
        assert segment.output.job_id == job.pk and segment.output.frames == frames
        assert segment.frame_consistency is not None and 0 < segment.frame_consistency <= 1
        assert segment.motion_smoothness is not None
        assert segment.motion_prompt == "walks to the window"
        # the stored last frame is the output's last frame, pixel for pixel
        with segment.last_frame.file.open("rb") as handle:
            stored = np.asarray(Image.open(handle).convert("RGB"))
        assert np.array_equal(stored, last_frame(segment.output.file.path))
    # segment 1 starts from Kai's reference; segment 2 from segment 1's last frame, as uploaded to the backend
    reference = kai.references.get()
    assert first.first_frame.sha256 == reference.sha256
    assert second.first_frame_id == first.last_frame_id
    assert np.array_equal(received_first_frame(fake, second.job), last_frame(first.output.file.path))
    assert (fake.input_dir / upload_name(image_source_from(first.last_frame))).exists()
    # the join 1 → 2 was scored and passed; each attempt left a feedback row
    join = JoinEvaluation.objects.get(segment=second)
    assert (join.kind, join.before_id, join.after_id) == ("segment", first.output_id, second.output_id)
    assert join.passed is True
    assert second.join_passed is True and second.join_ssim == join.ssim
    assert first.join_passed is None  # the film's first segment has no join
    assert QualityFeedback.objects.filter(segment__run=run).count() == 2
    done = wait_for_event(channel_layer, channel, "segment_complete")
    assert (done["scene"], done["segment"], done["run"]) == (scene.pk, 1, run.pk)
    wait_for_event(channel_layer, channel, "join_evaluated")
    complete = wait_for_event(channel_layer, channel, "scene_complete")
    assert (complete["status"], complete["segments"]) == ("complete", 2)


def test_the_next_scene_starts_from_the_last_frame_of_the_scene_before(fake, engine, project, kai, owner, frames):
    one = scene_with(project, [kai], duration=seconds(1, frames))
    two = scene_with(project, [kai], duration=seconds(1, frames))
    first = scene_generate(scene=one, user=owner, template=SEGMENT)
    # the scene after one still running would not start from its last frame: refused until it ends
    with pytest.raises(SceneError, match="scene 1 before it is still being generated"):
        scene_generate(scene=two, user=owner, template=SEGMENT)
    drive_scene(first, engine)

    run = drive_scene(scene_generate(scene=two, user=owner, template=SEGMENT), engine)

    assert run.status == "complete", run.reasons
    before = Segment.objects.get(scene=one)
    after = Segment.objects.get(scene=two)
    assert after.first_frame_id == before.last_frame_id
    assert np.array_equal(received_first_frame(fake, after.job), last_frame(before.output.file.path))
    join = JoinEvaluation.objects.get(scene=two)
    assert (join.kind, join.before_id, join.after_id) == ("scene", before.output_id, after.output_id)


def test_a_failed_job_is_retried_with_a_new_seed_then_fails_the_scene(fake, engine, project, kai, owner, frames):
    project.max_join_regenerations = 1
    project.save(update_fields=["max_join_regenerations"])
    scene = scene_with(project, [kai], duration=seconds(1, frames))
    run = scene_generate(scene=scene, user=owner, template=SEGMENT)
    segment = run.segments.get()
    first_job = segment.job

    _, announced = engine
    for attempt in (1, 2):
        job = segment.job
        job_fail(job_id=job.pk, error_type="node", message="CUDA out of memory", expect={JobStatus.QUEUED})
        # generation's failure hook asks a worker to step the scene's run
        assert ("quality.tasks.scene_step", run.pk, job.pk) in announced.take()
        quality_tasks.scene_step(run.pk, job.pk)
        assert quality_tasks.scene_step(run.pk, job.pk) in {"not the current attempt", "run failed"}  # re-delivered
        segment.refresh_from_db()
        if attempt == 1:
            assert segment.attempts == 2 and segment.job_id != first_job.pk and segment.seed != first_job.seed
    run.refresh_from_db()
    assert run.status == "failed"
    assert run.reasons[0] == "segment 1 failed after 2 attempts"
    assert "CUDA out of memory" in run.reasons[1]
    scene.refresh_from_db()
    segment.refresh_from_db()
    assert (scene.status, segment.status, segment.jobs.count()) == ("failed", "failed", 2)


def test_bad_requests_are_refused_with_nothing_written(fake, engine, project, kai, owner):
    lonely = scene_with(project, [])
    with pytest.raises(SceneError, match="no character"):
        scene_generate(scene=lonely, user=owner, template=SEGMENT)
    scene = scene_with(project, [kai])
    shipped("weightless-image")
    for slug, message in (
        ("no-such-template", "no workflow template 'no-such-template'"),
        ("weightless-image", "kind segment; 'weightless-image' is kind image"),
    ):
        with pytest.raises(SceneError, match=message):
            scene_generate(scene=scene, user=owner, template=slug)
    blind = shipped(SEGMENT)
    blind.pk, blind.project, blind.slug = None, project, "blind-segment"
    blind.bindings = {k: v for k, v in blind.bindings.items() if k != "init_image"}
    blind.save()
    with pytest.raises(SceneError, match="no image input"):
        scene_generate(scene=scene, user=owner, template="blind-segment")
    with pytest.raises(PlanError, match="segments must be"):
        scene_generate(scene=scene, user=owner, template=SEGMENT, segments=0)
    assert not SceneRun.objects.exists() and not Segment.objects.exists() and not InputImage.objects.exists()
    scene.refresh_from_db()
    assert scene.status == SceneStatus.PENDING

    scene_generate(scene=scene, user=owner, template=SEGMENT)
    with pytest.raises(SceneError, match="already being generated"):
        scene_generate(scene=scene, user=owner, template=SEGMENT)
    assert SceneRun.objects.count() == 1
