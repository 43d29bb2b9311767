"""A scene's chain corrects a discontinuous join and survives a killed worker (issue 20 items 2 and 4)."""

from __future__ import annotations

import itertools

import pytest

from generation import tasks
from generation.services.reconcile import reconcile
from quality.models import JoinEvaluation, QualityFeedback, SceneRun, Segment
from quality.movie.chain import scene_generate
from quality.movie.plan import segment_length
from quality.services.scoring import job_score
from tests.generation.engine_helpers import shipped
from tests.quality.movie_chain_helpers import SEGMENT, cast, drive_scene, movie_project, scene_with

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner):
    return movie_project(owner)


@pytest.fixture
def kai(project, owner):
    return cast(project, owner)


def two_segments(project) -> float:
    frames, fps = segment_length(template=shipped(SEGMENT), project=project)
    return (2 * frames - 1) / fps


def test_a_discontinuous_join_fails_its_gate_and_the_segment_is_regenerated(fake, engine, project, kai, owner):
    scene = scene_with(project, [kai], duration=two_segments(project))
    run = scene_generate(scene=scene, user=owner, template=SEGMENT)
    # the second segment is asked for a cut at its first frame (the template's test input)
    Segment.objects.filter(run=run, number=2).update(params={"discontinuity": 1.0})

    run = drive_scene(run, engine)

    assert run.status == "complete", run.reasons
    second = Segment.objects.get(run=run, number=2)
    joins = list(JoinEvaluation.objects.filter(segment=second).order_by("attempt"))
    assert joins[0].passed is False and joins[-1].passed is True
    assert second.attempts == len(joins) >= 2 and second.jobs.count() == second.attempts
    # each retry calmed the jump (adjusted_params) and drew a new seed
    attempts = list(second.jobs.order_by("pk"))
    asked = [job.overrides.get("discontinuity") for job in attempts]
    assert asked[0] == 1.0 and all(b < a for a, b in itertools.pairwise(asked))
    assert len({job.seed for job in attempts}) == len(attempts)
    assert second.job_id == attempts[-1].pk and second.output.job_id == attempts[-1].pk
    assert second.join_passed is True and second.join_ssim == joins[-1].ssim
    verdicts = list(QualityFeedback.objects.filter(segment=second).order_by("attempt").values_list("passed", flat=True))
    assert verdicts[0] is False and verdicts[-1] is True and len(verdicts) == second.attempts


def test_a_join_that_never_passes_fails_the_scene_after_its_attempts(fake, engine, project, kai, owner):
    project.max_join_regenerations = 0
    project.save(update_fields=["max_join_regenerations"])
    scene = scene_with(project, [kai], duration=two_segments(project))
    run = scene_generate(scene=scene, user=owner, template=SEGMENT)
    Segment.objects.filter(run=run, number=2).update(params={"discontinuity": 1.0})

    run = drive_scene(run, engine)

    assert run.status == "failed"
    assert run.reasons[0] == "segment 2 failed after 1 attempt"
    assert "join failed its gate" in run.reasons[1]
    scene.refresh_from_db()
    assert scene.status == "failed"
    assert list(run.segments.values_list("status", flat=True)) == ["complete", "failed"]


def test_a_worker_killed_between_scoring_and_step_does_not_lose_the_chain(fake, engine, project, kai, owner):
    scene = scene_with(project, [kai], duration=two_segments(project))
    run = scene_generate(scene=scene, user=owner, template=SEGMENT)
    runs, announced = engine
    first = Segment.objects.get(run=run, number=1)
    runs.take(), announced.take()
    assert tasks.job_run(first.job_id) == "succeeded"
    # scored, and the worker is killed before it steps the scene (what it held in memory is gone)
    job_score(job_id=first.job_id)
    announced.take()
    first.refresh_from_db()
    assert (first.status, first.last_frame_id) == ("running", None)

    # a new worker starts: generation's reconcile runs the scenes' hook, which concludes segment 1
    report = reconcile(enqueue_run=runs, enqueue_adopt=lambda job_id: None)

    assert report.hooks["quality.tasks.scenes_reconcile"] == "1 running scene run(s) checked"
    first.refresh_from_db()
    second = Segment.objects.get(run=run, number=2)
    assert first.status == "complete" and second.status == "running"
    assert second.first_frame_id == first.last_frame_id and second.jobs.count() == 1
    # reconcile again while segment 2 runs: nothing is submitted twice
    reconcile(enqueue_run=runs, enqueue_adopt=lambda job_id: None)
    assert second.jobs.count() == 1
    assert drive_scene(SceneRun.objects.get(pk=run.pk), engine).status == "complete"
