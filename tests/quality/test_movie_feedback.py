"""Quality feedback of segment attempts, and the defaults learned from the passing ones."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile

from generation.models import Asset, AssetKind, Job, JobStatus
from projects.models import Episode, Scene
from quality.models import JoinEvaluation, JoinKind, QualityFeedback, QualityScore, SceneRun, Segment
from quality.movie.feedback import feedback_record
from quality.movie.learning import LEARN_FROM, suggested_params
from tests.factories import make_project
from tests.generation.engine_helpers import shipped


@pytest.fixture
def template(db):
    return shipped("weightless-segment")


@pytest.fixture
def segment(project, template) -> Segment:
    episode = Episode.objects.create(project=project, number=1, title="Pilot")
    scene = Scene.objects.create(episode=episode, number=1, title="Rooftop")
    run = SceneRun.objects.create(scene=scene, template=template, segments_planned=2)
    return Segment.objects.create(run=run, scene=scene, number=2, params={"discontinuity": 0.1})


def attempt_job(project, template, **fields) -> Job:
    values = {
        "prompt": "kai on the rooftop, dusk, warm light, tension 7",
        "params": {"prompt": "kai on the rooftop", "frames": 24, "fps": 12, "motion": 4, "discontinuity": 0.5},
        "overrides": {"discontinuity": 0.5},
        "status": JobStatus.SUCCEEDED,
        **fields,
    }
    return Job.objects.create(project=project, template=template, **values)


def clip(job: Job) -> Asset:
    return Asset.objects.create(
        project=job.project, job=job, file=ContentFile(b"x", name="s.mp4"), kind=AssetKind.VIDEO, mime="video/mp4"
    )


def failing_join(segment: Segment) -> JoinEvaluation:
    return JoinEvaluation.objects.create(
        project=segment.scene.episode.project,
        scene=segment.scene,
        kind=JoinKind.SEGMENT,
        segment=segment,
        ssim=0.42,
        flow_discontinuity=1.2,
        passed=False,
        details={"ssim_min": 0.5, "flow_max": 3.0, "passed_ssim": False, "passed_flow": True, "reasons": ["…"]},
    )


def test_an_attempt_is_remembered_with_its_scores_prompt_params_and_elements(project, template, segment):
    job = attempt_job(project, template)
    asset = clip(job)
    QualityScore.objects.create(asset=asset, metric="temporal_ssim", value=0.91)
    QualityScore.objects.create(asset=asset, metric="motion_smoothness", value=0.97)
    QualityScore.objects.create(asset=asset, metric="overall", value=0.4, threshold=0.6, passed=False)
    QualityScore.objects.create(asset=asset, metric="overall", value=0.7, threshold=0.6, passed=True)  # re-scored
    join = failing_join(segment)
    row = feedback_record(segment=segment, job=job, attempt=2, join=join, passed=False)
    row.refresh_from_db()
    assert row.project == project and row.template == template and row.job == job and row.attempt == 2
    assert row.scores == {
        "join_ssim": 0.42,
        "join_flow_discontinuity": 1.2,
        "temporal_ssim": 0.91,
        "motion_smoothness": 0.97,
        "overall": 0.7,
    }
    assert row.prompt == "kai on the rooftop, dusk, warm light, tension 7"
    # the job's own overrides (this attempt's), not the segment's (already the next attempt's)
    assert row.params == {"frames": 24, "fps": 12, "motion": 4, "discontinuity": 0.5}
    assert row.failed_elements == [{"name": "join_ssim", "value": 0.42, "threshold": 0.5}]
    assert {e["name"] for e in row.successful_elements} == {"join_flow_discontinuity", "overall"}
    assert row.passed is False and row.rating is None


def test_an_unevaluated_join_and_a_failed_job_say_why(project, template, segment):
    job = attempt_job(project, template, status=JobStatus.FAILED, error_message="node 7: out of memory")
    join = JoinEvaluation.objects.create(
        project=project, scene=segment.scene, kind=JoinKind.SEGMENT, details={"reason": "too few frames"}
    )
    row = feedback_record(segment=segment, job=job, attempt=1, join=join, passed=None)
    assert row.scores == {"join_ssim": None, "join_flow_discontinuity": None, "join_reason": "too few frames"}
    assert row.successful_elements == []
    assert row.failed_elements == [
        {"name": "job", "value": "failed", "threshold": None, "reason": "node 7: out of memory"}
    ]
    assert row.passed is None


def feedback(project, template, params, passed, joined: bool = True) -> QualityFeedback:
    scores = {"join_ssim": 0.8, "join_flow_discontinuity": 1.1} if joined else {"overall": 0.9}
    row = QualityFeedback(project=project, template=template, params=params, passed=passed, scores=scores)
    row.save()
    return row


def test_suggestions_are_the_medians_of_passing_attempts_only(project, template, owner):
    feedback(project, template, {"discontinuity": 0.2, "motion": 3, "seed": 11, "frames": 24}, True)
    feedback(project, template, {"discontinuity": 0.4, "motion": 4, "seed": 12}, True)
    feedback(project, template, {"discontinuity": 0.1, "motion": 5}, True)
    feedback(project, template, {"discontinuity": 0.9, "motion": 40}, False)  # failed: teaches nothing
    feedback(project, template, {"discontinuity": 0.9, "motion": 40}, None)  # not evaluated: nor this
    feedback(project, template, {"discontinuity": 0.9, "motion": 40}, True, joined=False)  # a first segment: no join
    other_project = make_project(owner, name="Elsewhere")
    feedback(other_project, template, {"discontinuity": 0.0, "motion": 1}, True)
    feedback(project, shipped("svd-segment"), {"discontinuity": 0.0, "motion_bucket": 90}, True)
    # knobs only (seed and frames are the chain's own), ints stay ints
    assert suggested_params(project=project, template=template) == {"discontinuity": 0.2, "motion": 4}


def test_no_passing_attempt_means_no_suggestion(project, template):
    assert suggested_params(project=project, template=template) == {}
    feedback(project, template, {"discontinuity": 0.9}, False)
    assert suggested_params(project=project, template=template) == {}
    assert suggested_params(project=project, template=None) == {}


def test_suggestions_follow_the_newest_passing_attempts(project, template):
    for _ in range(LEARN_FROM):
        feedback(project, template, {"discontinuity": 0.8}, True)
    for _ in range(LEARN_FROM // 2 + 1):
        feedback(project, template, {"discontinuity": 0.1}, True)
    assert suggested_params(project=project, template=template) == {"discontinuity": 0.1}
