"""A job that succeeded while Redis was down is scored after the next reconcile."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from generation import tasks
from generation.models import Job
from quality.models import QualityGate
from quality.services import catch_up
from quality.tasks import score_job
from tests.factories import AssetFactory, JobFactory, make_project
from tests.quality.scoring_helpers import closed_port, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PUSH = tasks.async_task  # django-q2's push through generation's broker (the engine fixture records instead)


@pytest.fixture
def project(owner):
    return make_project(owner, threshold_aesthetic=0.0)


def finished_ago(job: Job, minutes: float) -> None:
    Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(minutes=minutes))


def test_a_job_announced_while_redis_was_down_is_scored_after_the_next_reconcile(
    fake, project, owner, engine, models, broker, caplog, monkeypatch
):
    _, announced = engine
    working = broker.connection
    broker.connection = redis.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0")  # Redis is down
    monkeypatch.setattr(tasks, "async_task", PUSH)
    job = submit(project, owner)
    try:
        assert tasks.job_run(job.pk) == "succeeded"  # the lost announcement does not fail the job
    finally:
        broker.connection.close()
        broker.connection = working  # Redis is back
        monkeypatch.setattr(tasks, "async_task", announced)
    assert announced.take() == []
    assert f"could not have job {job.pk} scored" in caplog.text
    finished_ago(job, 10)

    report = tasks.reconcile_all()

    assert report["hooks"]["quality.tasks.score_missing"] == [job.pk]
    assert announced.take() == [("quality.tasks.score_job", job.pk)]
    assert score_job(job.pk) == "passed"  # what the worker runs
    assert QualityGate.objects.filter(job=job, stage="post_gen").count() == 1

    tasks.reconcile_all()  # scored now: nothing more to catch up

    assert announced.take() == []


def test_only_recent_settled_unscored_jobs_with_outputs_are_caught_up(project, owner):
    def succeeded(minutes: float, outputs: bool = True, status: str = "succeeded") -> Job:
        job = JobFactory(project=project, status=status)
        finished_ago(job, minutes)
        if outputs:
            AssetFactory(project=project, job=job)
        return job

    due = succeeded(10)
    succeeded(1)  # its announcement may still be queued
    succeeded(60 * 25)  # older than the window
    succeeded(10, outputs=False)  # nothing to score
    succeeded(10, status="failed")
    scored = succeeded(10)
    QualityGate.objects.create(job=scored, stage="post_gen", passed=True)
    pre_gated = succeeded(10)  # a pre-generation gate is not a score
    QualityGate.objects.create(job=pre_gated, stage="pre_gen", passed=True)

    assert catch_up.jobs_missing_scores() == [due.pk, pre_gated.pk]


def test_each_run_is_bounded_oldest_first(project, owner):
    jobs = []
    for minutes in (30, 20, 10):
        job = JobFactory(project=project, status="succeeded")
        finished_ago(job, minutes)
        AssetFactory(project=project, job=job)
        jobs.append(job)
    enqueued: list[int] = []

    assert catch_up.score_missing_enqueue(enqueue=enqueued.append, limit=2) == [jobs[0].pk, jobs[1].pk]
    assert enqueued == [jobs[0].pk, jobs[1].pk]


def test_a_failing_hook_does_not_stop_reconcile(settings, monkeypatch):
    settings.TOWER_ON_RECONCILE = ["quality.services.catch_up.no_such_function", "quality.tasks.score_missing"]
    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)

    report = tasks.reconcile_all()

    assert report["hooks"]["quality.services.catch_up.no_such_function"].startswith("failed:")
    assert report["hooks"]["quality.tasks.score_missing"] == []
