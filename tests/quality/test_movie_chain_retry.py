"""Retrying a failed segment: the chain goes on from it, the complete segments before it kept (issue 20 item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from generation.film.frames import last_frame
from projects.models import SceneStatus
from projects.services import project_member_set
from quality.models import SceneRun, Segment
from quality.movie.chain import SceneError, scene_generate, segment_retry
from quality.movie.plan import segment_length
from tests.generation.engine_helpers import shipped
from tests.quality.movie_chain_helpers import (
    SEGMENT,
    cast,
    drive_scene,
    fail_segment,
    movie_project,
    received_first_frame,
    scene_with,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner, viewer):
    project = movie_project(owner)
    project.max_join_regenerations = 0  # one failure fails the segment
    project.save(update_fields=["max_join_regenerations"])
    project_member_set(project=project, username=viewer.username, role="viewer")
    return project


@pytest.fixture
def kai(project, owner):
    return cast(project, owner)


def three_segments(project) -> float:
    frames, fps = segment_length(template=shipped(SEGMENT), project=project)
    return (3 * frames - 2) / fps


def test_a_failed_segment_is_retried_and_the_chain_goes_on_from_it(fake, engine, project, kai, owner):
    scene = scene_with(project, [kai], duration=three_segments(project))
    run = fail_segment(scene_generate(scene=scene, user=owner, template=SEGMENT), 2, engine)
    assert run.status == "failed" and "CUDA out of memory" in " ".join(run.reasons)
    first, second, third = Segment.objects.filter(run=run).order_by("number")
    assert (first.status, second.status, third.status) == ("complete", "failed", "pending")
    kept_output, failed_job = first.output_id, second.job

    retried = segment_retry(segment=second, user=owner)

    assert retried.pk == run.pk and retried.status == "running" and retried.reasons == []
    scene.refresh_from_db()
    second.refresh_from_db()
    assert scene.status == SceneStatus.RUNNING
    assert (second.status, second.attempts) == ("running", 1)  # a fresh attempt budget
    assert second.job_id != failed_job.pk and second.seed != failed_job.seed
    assert second.first_frame_id == first.last_frame_id
    assert set(second.jobs.values_list("pk", flat=True)) == {failed_job.pk, second.job_id}
    # a double click finds it running: refused, nothing more submitted
    with pytest.raises(SceneError, match="being generated"):
        segment_retry(segment=second, user=owner)
    assert second.jobs.count() == 2

    run = drive_scene(run, engine)

    assert run.status == "complete", run.reasons
    scene.refresh_from_db()
    assert scene.status == SceneStatus.COMPLETE and SceneRun.objects.filter(scene=scene).count() == 1
    first, second, third = Segment.objects.filter(run=run).order_by("number")
    assert first.output_id == kept_output and first.attempts == 1  # segment 1 was not generated again
    assert [s.status for s in (first, second, third)] == ["complete"] * 3
    assert np.array_equal(received_first_frame(fake, second.job), last_frame(first.output.file.path))
    assert third.first_frame_id == second.last_frame_id


def test_segment_one_retried_starts_from_the_scene_start_frame(fake, engine, project, kai, owner):
    scene = scene_with(project, [kai], duration=three_segments(project))
    run = fail_segment(scene_generate(scene=scene, user=owner, template=SEGMENT, segments=1), 1, engine)
    first = run.segments.get()
    assert first.status == "failed"
    start = first.first_frame_id

    segment_retry(segment=first, user=owner)

    first.refresh_from_db()
    assert (first.status, first.attempts, first.first_frame_id) == ("running", 1, start)
    assert drive_scene(run, engine).status == "complete"


def test_a_retry_is_refused_unless_the_segment_failed_and_the_user_may_write(fake, engine, project, kai, owner, viewer):
    scene = scene_with(project, [kai], duration=three_segments(project))
    run = scene_generate(scene=scene, user=owner, template=SEGMENT, segments=2)
    with pytest.raises(SceneError, match="being generated"):
        segment_retry(segment=run.segments.get(number=1), user=owner)
    run = fail_segment(run, 2, engine)
    first, second = Segment.objects.filter(run=run).order_by("number")
    with pytest.raises(SceneError, match="segment 1 is complete: only a failed segment"):
        segment_retry(segment=first, user=owner)
    with pytest.raises(SceneError, match="owner and editors"):
        segment_retry(segment=second, user=viewer)
    # a newer run of the scene: the old run's segment is history
    newer = drive_scene(scene_generate(scene=scene, user=owner, template=SEGMENT, segments=1), engine)
    assert newer.status == "complete"
    with pytest.raises(SceneError, match="earlier run"):
        segment_retry(segment=second, user=owner)
    second.refresh_from_db()
    assert (second.status, second.jobs.count()) == ("failed", 1)
