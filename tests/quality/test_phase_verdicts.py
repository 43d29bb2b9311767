"""Phase verdicts (C6) over stored scores, the final gate, and the phase check a submission asks."""

from __future__ import annotations

import pytest

from characters.services import character_create
from quality.models import Orchestration, PhaseGate, PhaseRun, QualityGate, QualityScore
from quality.services.phase_gates import gate_record_final, jobs_created, phase_open_for, phase_verdict
from tests.factories import AssetFactory, JobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def aiko(project):
    return character_create(project=project, name="Aiko", design_prompt="1girl")


def scored_job(project, *, phase, kind="image", character=None, metrics, post_gen=True, checks=()):
    """A succeeded job with one output whose scores are ``metrics`` {name: (value, status, details)}."""
    job = JobFactory(project=project, phase=phase, kind=kind, character=character, status="succeeded")
    asset = AssetFactory(project=project, job=job)
    for metric, (value, status, details) in metrics.items():
        QualityScore.objects.create(asset=asset, metric=metric, value=value, status=status, details=details)
    if post_gen:
        QualityGate.objects.create(
            job=job,
            stage="post_gen",
            passed=True,
            details={"checks": [{"asset": asset.pk, **c} for c in checks]},
        )
    return job, asset


def test_phase_1_face_quality_above_the_threshold_passes_and_below_fails(project, aiko):
    good, asset = scored_job(
        project, phase=1, kind="character_sheet", character=aiko, metrics={"face_quality": (0.85, "ok", {})}
    )
    bad, _ = scored_job(
        project, phase=1, kind="character_sheet", character=aiko, metrics={"face_quality": (0.62, "ok", {})}
    )

    verdict = phase_verdict(job=good, phase=1)
    assert (verdict.passed, verdict.score, verdict.asset_id) == (True, 0.85, asset.pk)
    failed = phase_verdict(job=bad, phase=1)
    assert failed.passed is False
    assert failed.reasons == ["face_quality 0.62 is not above 0.8"]


def test_phase_2_needs_coherence_motion_and_a_seamless_loop(project):
    job, _ = scored_job(
        project,
        phase=2,
        kind="loop",
        metrics={
            "subject_consistency": (0.9, "ok", {}),
            "motion_smoothness": (0.95, "ok", {}),
            "loop_seamlessness": (0.3, "ok", {"seamless": False}),
        },
    )

    verdict = phase_verdict(job=job, phase=2)

    assert verdict.passed is False
    assert verdict.reasons == ["the loop is not seamless (its last → first step stands out)"]
    assert verdict.checks["subject_consistency"]["passed"] is True


def test_a_phase_metric_that_could_not_run_is_not_evaluated_with_the_fix(project):
    job, _ = scored_job(
        project,
        phase=3,
        kind="video",
        metrics={
            "overall": (
                None,
                "unavailable",
                {"reason": "motion_smoothness: weights missing", "fix": "python manage.py fetch_models amt-s"},
            )
        },
    )

    verdict = phase_verdict(job=job, phase=3)

    assert verdict.passed is None
    assert verdict.reasons == ["motion_smoothness: weights missing; fix: python manage.py fetch_models amt-s"]
    assert verdict.fix == ["python manage.py fetch_models amt-s"]


def test_a_failed_post_generation_check_fails_the_phase(project):
    job, _ = scored_job(
        project,
        phase=3,
        kind="video",
        metrics={"overall": (0.9, "ok", {})},
        checks=[{"metric": "aesthetic", "value": 4.0, "threshold": 5.5, "passed": False}],
    )

    verdict = phase_verdict(job=job, phase=3)

    assert verdict.passed is False
    assert verdict.reasons == ["post-generation: aesthetic 4 is not above 5.5"]


def test_an_unscored_job_is_not_evaluated(project):
    job = JobFactory(project=project, phase=3, kind="video", status="succeeded")
    assert phase_verdict(job=job, phase=3).passed is None


def test_gate_record_final_writes_the_verdict(project):
    job, _ = scored_job(project, phase=3, kind="video", metrics={"overall": (0.9, "ok", {})})

    gate = gate_record_final(job=job, verdict=phase_verdict(job=job, phase=3))

    gate.refresh_from_db()
    assert (gate.stage, gate.passed, gate.details["score"]) == ("final", True, 0.9)


def test_phase_open_for_says_why_a_character_may_not_start_phase_2(project, aiko, admin_user):
    for passed in [True] * 3 + [False] * 7:
        job = JobFactory(project=project, phase=1, character=aiko)
        QualityGate.objects.create(job=job, stage="post_gen", passed=passed, details={})

    assert phase_open_for(project=project, character=aiko, phase=2) == (
        "Aiko's phase 1 gate is closed: 3 of the last 10 phase-1 outputs passed (needs 80% of 10)"
    )
    assert phase_open_for(project=project, character=aiko, phase=1) is None

    PhaseGate.objects.create(
        project=project, character=aiko, phase=1, is_open=True, overridden_by=admin_user, override_reason="approved"
    )
    assert phase_open_for(project=project, character=aiko, phase=2) is None
    assert phase_open_for(project=project, character=aiko, phase=3).startswith("Aiko's phase 2 gate is closed")


def test_an_orchestration_that_passed_the_phase_opens_it(project, aiko):
    run = Orchestration.objects.create(project=project, character=aiko)
    PhaseRun.objects.create(orchestration=run, phase=1, status="passed")

    assert phase_open_for(project=project, character=aiko, phase=2) is None
    assert phase_open_for(project=project, character=aiko, phase=3) is not None


def test_jobs_created_records_pre_gen_gates_once(project):
    accepted = JobFactory(
        project=project,
        params={
            "inputs": [{"parameter": "init_image", "name": "tower-ab.png", "path": "assets/a.png", "sha256": "ab"}]
        },
    )
    refused = JobFactory(
        project=project, status="failed", error_type="preflight", error_message="pre-flight: no node Foo"
    )

    jobs_created(job_ids=[accepted.pk, refused.pk])
    jobs_created(job_ids=[accepted.pk, refused.pk])

    ok = QualityGate.objects.get(job=accepted, stage="pre_gen")
    assert ok.passed is True and ok.details["inputs"][0]["name"] == "tower-ab.png"
    no = QualityGate.objects.get(job=refused, stage="pre_gen")
    assert no.passed is False and no.details["preflight"]["message"] == "pre-flight: no node Foo"


def test_a_reason_that_already_names_its_command_says_it_once(project):
    fix = "python manage.py fetch_models alexnet"
    job, _ = scored_job(
        project,
        phase=3,
        kind="video",
        metrics={
            "overall": (
                None,
                "unavailable",
                {"reason": f"subject_consistency: weights missing; run: {fix}", "fix": fix},
            )
        },
    )

    verdict = phase_verdict(job=job, phase=3)

    assert verdict.reasons == [f"subject_consistency: weights missing; run: {fix}"]
    assert verdict.fix == [fix]


def test_a_loop_verdict_not_evaluated_shows_no_score(project):
    # Motion smoothness ran (pixel flow) but subject consistency did not (its weights are missing).
    job, _ = scored_job(
        project,
        phase=2,
        kind="loop",
        metrics={
            "subject_consistency": (None, "unavailable", {"reason": "alexnet weights missing"}),
            "motion_smoothness": (0.99, "ok", {}),
            "loop_seamlessness": (1.0, "ok", {"seamless": True}),
        },
    )

    verdict = phase_verdict(job=job, phase=2)

    assert (verdict.passed, verdict.score) == (None, None)
    assert verdict.checks["motion_smoothness"]["passed"] is True
