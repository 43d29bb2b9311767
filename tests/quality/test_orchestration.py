"""Orchestrations on the fake ComfyUI: sheet → loop → video, each phase behind its gate (issue 18 item 5).

The jobs run and are scored in the test's thread (``orchestration_helpers.drive``), as the workers
would. Without model weights the gates cannot be evaluated: the flow tests let the project pass
unevaluated gates (``advance_unevaluated``); where a gate must really fail, the tiny models score.
"""

from __future__ import annotations

import pytest

from generation import tasks
from generation.models import Job, JobStatus
from generation.services.reconcile import reconcile
from quality.models import Orchestration, PhaseRun, QualityGate
from quality.services.orchestration import (
    OrchestrationError,
    orchestration_advance,
    orchestration_cancel,
)
from quality.services.scoring import job_score
from tests.quality.orchestration_helpers import WEIGHTLESS, character_with_reference, drive, flow_project, run_of, start
from tests.quality.scoring_helpers import listen, wait_for_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner):
    return flow_project(owner)


@pytest.fixture
def character(project):
    return character_with_reference(project)


def test_advance_is_refused_unless_waiting(fake, engine, project, character, owner):
    orchestration = start(project, character, owner)

    with pytest.raises(OrchestrationError, match="only an orchestration waiting for approval"):
        orchestration_advance(orchestration=orchestration, user=owner)


def test_an_unevaluated_gate_stops_the_orchestration_unless_the_project_allows_it(
    fake, engine, project, character, owner
):
    project.advance_unevaluated = False
    project.save(update_fields=["advance_unevaluated"])

    orchestration = drive(start(project, character, owner), engine)

    assert orchestration.status == "failed"
    assert orchestration.reasons[0].startswith("phase 1's gate could not be evaluated")
    sheet = run_of(orchestration, 1)
    assert (sheet.status, sheet.attempts) == ("failed", 1)  # a new seed cannot bring missing weights
    assert [r.status for r in (run_of(orchestration, 2), run_of(orchestration, 3))] == ["cancelled", "cancelled"]
    assert QualityGate.objects.filter(job__in=sheet.jobs.all(), stage="final", passed__isnull=True).count() == 1


def test_a_gate_that_can_never_pass_fails_after_the_bounded_attempts(fake, engine, project, character, owner, models):
    # The tiny models evaluate every output; an aesthetic score of 10 (the scale's top) is never reached.
    project.threshold_aesthetic = 10.0
    project.max_regenerations = 2
    project.save(update_fields=["threshold_aesthetic", "max_regenerations"])

    orchestration = drive(start(project, character, owner), engine)

    assert orchestration.status == "failed"
    sheet = run_of(orchestration, 1)
    jobs = list(sheet.jobs.order_by("pk"))
    assert (sheet.status, sheet.attempts, len(jobs)) == ("failed", 3, 3)  # 1 + max_regenerations
    assert len({job.seed for job in jobs}) == 3  # a new seed each attempt
    assert orchestration.reasons[0] == "phase 1 failed after 3 attempts"
    assert any(r.startswith("post-generation: aesthetic") and "10" in r for r in orchestration.reasons[1:])
    assert sheet.gate["passed"] is False and sheet.gate["reasons"] == orchestration.reasons[1:]
    assert QualityGate.objects.get(job=jobs[-1], stage="final").passed is False
    # Scoring regenerated none of them: the orchestration's attempts are the regeneration.
    assert not Job.objects.filter(parent__in=jobs).exists()
    assert all(
        g.details["regeneration"].startswith("left to its orchestration")
        for g in QualityGate.objects.filter(job__in=jobs, stage="post_gen")
    )
    assert not run_of(orchestration, 2).jobs.exists()


def test_a_job_failing_in_generation_is_a_failed_attempt(fake, engine, project, character, owner, settings):
    settings.TOWER_ON_JOB_FAILED = ["quality.tasks.job_failed"]
    fake.configure(failures={"SaveImage": ("RuntimeError", "out of memory")})  # every sheet fails
    orchestration = drive(start(project, character, owner), engine)

    assert orchestration.status == "failed"
    sheet = run_of(orchestration, 1)
    assert sheet.attempts == 2  # 1 + max_regenerations
    assert orchestration.reasons[0] == "phase 1 failed after 2 attempts"
    assert "attempt 2 (job" in orchestration.reasons[1] and "failed" in orchestration.reasons[1]


def test_reconcile_and_redelivered_steps_do_not_submit_twice(fake, engine, project, character, owner):
    from quality.tasks import orchestration_step, orchestrations_reconcile

    orchestration = start(project, character, owner)
    [first] = run_of(orchestration, 1).jobs.all()
    tasks.job_run(first.pk)
    job_score(job_id=first.pk)

    orchestration_step(orchestration.pk, first.pk)
    orchestration_step(orchestration.pk, first.pk)  # a re-delivered task
    orchestrations_reconcile()

    assert [r.jobs.count() for r in PhaseRun.objects.filter(orchestration=orchestration)] == [1, 1, 0]


def test_cancel_stops_the_running_job_and_the_phases(fake, engine, project, character, owner):
    orchestration = start(project, character, owner)
    [job] = run_of(orchestration, 1).jobs.all()

    orchestration_cancel(orchestration=orchestration, user=owner)

    orchestration.refresh_from_db()
    assert orchestration.status == "cancelled" and orchestration.reasons == ["cancelled by owner"]
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED
    assert set(PhaseRun.objects.filter(orchestration=orchestration).values_list("status", flat=True)) == {"cancelled"}
    assert drive(orchestration, engine).status == "cancelled"  # nothing moves it again


@pytest.mark.parametrize(
    ("templates", "message"),
    [
        ({"sheet": "no-such-template"}, "no workflow template 'no-such-template' for the sheet phase"),
        (
            {"loop": "weightless-video"},
            "the loop phase needs a template of kind loop; 'weightless-video' is kind video",
        ),
        ({"poster": "weightless-image"}, "unknown template key(s) 'poster'"),
    ],
)
def test_bad_templates_are_refused_with_nothing_written(fake, engine, project, character, owner, templates, message):
    with pytest.raises(OrchestrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        start(project, character, owner, templates={**WEIGHTLESS, **templates})

    assert not Orchestration.objects.exists() and not Job.objects.exists()


def test_events_tell_the_project_how_it_goes(fake, engine, project, character, owner, channel_layer):
    channel = listen(channel_layer, f"project.{project.pk}")

    orchestration = start(project, character, owner, auto_advance=False)

    started = wait_for_event(channel_layer, channel, "orchestration_progress")
    assert (started["orchestration"], started["phase"], started["status"], started["attempt"]) == (
        orchestration.pk,
        1,
        "running",
        1,
    )
    drive(orchestration, engine)
    passed = wait_for_event(channel_layer, channel, "phase_passed")
    assert (passed["orchestration"], passed["passed_phase"]) == (orchestration.pk, 1)
    assert passed["best_asset"] == run_of(orchestration, 1).best_asset_id
    waiting = wait_for_event(channel_layer, channel, "orchestration_progress")
    assert (waiting["status"], waiting["phase"]) == ("waiting", 2)
    orchestration_cancel(orchestration=orchestration, user=owner)
    assert wait_for_event(channel_layer, channel, "orchestration_progress")["status"] == "cancelled"


def test_a_failed_orchestration_is_announced_with_its_reasons(fake, engine, project, character, owner, channel_layer):
    project.advance_unevaluated = False
    project.save(update_fields=["advance_unevaluated"])
    orchestration = start(project, character, owner)
    channel = listen(channel_layer, f"orchestration.{orchestration.pk}")

    drive(orchestration, engine)

    failed = wait_for_event(channel_layer, channel, "orchestration_failed")
    assert (failed["orchestration"], failed["project"], failed["status"]) == (orchestration.pk, project.pk, "failed")
    assert failed["reasons"] == Orchestration.objects.get(pk=orchestration.pk).reasons


def test_a_worker_killed_between_scoring_and_step_does_not_lose_it(fake, engine, project, character, owner):
    orchestration = start(project, character, owner, auto_advance=False)
    runs, _ = engine
    [first] = run_of(orchestration, 1).jobs.all()
    assert tasks.job_run(first.pk) == "succeeded"
    # Scored, and the worker is killed before it steps the orchestration (tasks queued in the
    # broker survive it; what it held in memory does not).
    job_score(job_id=first.pk)
    assert Orchestration.objects.get(pk=orchestration.pk).phase == 1

    # A new worker starts: reconcile finds phase 1 without a live job and concludes it.
    report = reconcile(enqueue_run=runs, enqueue_adopt=lambda job_id: None)

    assert report.hooks["quality.tasks.orchestrations_reconcile"] == "1 running orchestration(s) checked"
    orchestration.refresh_from_db()
    assert (orchestration.status, orchestration.phase) == ("waiting", 2)
    assert run_of(orchestration, 1).status == "passed"
    assert QualityGate.objects.filter(job=first, stage="final").count() == 1
    orchestration_advance(orchestration=orchestration, user=owner)
    orchestration = drive(orchestration, engine)
    assert (orchestration.status, orchestration.phase, run_of(orchestration, 2).status) == ("waiting", 3, "passed")


def test_a_character_without_a_reference_cannot_start_a_sheet(fake, engine, project, owner):
    from characters.services import character_create

    bare = character_create(project=project, name="Nobody", design_prompt="1girl")

    with pytest.raises(OrchestrationError) as refused:
        start(project, bare, owner)

    assert str(refused.value).startswith("phase 1 (weightless-sheet) was refused:")
    assert "reference_image" in str(refused.value)

    assert not Orchestration.objects.exists()


def test_a_job_cancelled_on_its_own_page_is_a_failed_attempt_at_the_next_reconcile(
    fake, engine, project, character, owner
):
    from generation.services.submit import job_cancel
    from quality.tasks import orchestrations_reconcile

    orchestration = start(project, character, owner)
    [first] = run_of(orchestration, 1).jobs.all()
    job_cancel(job=first, user=owner)  # from the job's page, not the orchestration's

    orchestrations_reconcile()

    sheet = run_of(orchestration, 1)
    assert (sheet.status, sheet.attempts) == ("running", 2)
    assert sheet.gate["reasons"] == [f"attempt 1 (job {first.pk}) was cancelled"]
    assert Orchestration.objects.get(pk=orchestration.pk).status == "running"
