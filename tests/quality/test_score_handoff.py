"""A job that succeeds is handed to scoring after its commit, as a django-q2 task; every succeeded
job gets its gate, also when its announcement was lost."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import pytest
import redis as redis_lib
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.brokers import get_broker
from django_q.signing import SignedPackage

from generation import tasks
from generation.models import Job, JobStatus
from quality.metrics.runtime import loaded_keys
from quality.models import QualityGate
from quality.services import catch_up, scoring
from quality.tasks import job_succeeded, score_job, score_succeeded
from tests.factories import AssetFactory, JobFactory, make_project
from tests.quality.scoring_helpers import closed_port, png, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PUSH = tasks.async_task  # django-q2's push through generation's broker (fixtures replace it)


@pytest.fixture
def project(owner):
    return make_project(owner, threshold_aesthetic=0.0)


@pytest.fixture
def queue(broker, monkeypatch):
    """A django-q2 queue of this test's own on the test Redis, pushed to for real."""
    own = get_broker(list_key=f"test-{uuid.uuid4().hex[:8]}")
    own.connection = broker.connection
    monkeypatch.setattr(tasks, "_broker", lambda: own)
    monkeypatch.setattr(tasks, "async_task", PUSH)
    yield own
    own.delete_queue()


def queued(queue) -> list[tuple]:
    """The tasks waiting in ``queue`` as (function, *args), taken off it."""
    found = []
    while queue.queue_size():
        [(_, payload)] = queue.dequeue()
        task = SignedPackage.loads(payload)
        found.append((task["func"], *task["args"]))
    return found


def run(calls: list[tuple]) -> list[str]:
    """What a worker does with the tasks taken off the queue."""
    return [import_string(path)(*args) for path, *args in calls]


def succeeded(project, owner, *, minutes_ago: float = 0) -> Job:
    """A job that has just succeeded with one output (not announced)."""
    job = JobFactory(
        project=project,
        created_by=owner,
        status=JobStatus.SUCCEEDED,
        finished_at=timezone.now() - timedelta(minutes=minutes_ago),
    )
    AssetFactory(project=project, job=job, file=ContentFile(png(), name="out.png"))
    return job


def gated(*jobs: Job) -> list[bool]:
    ids = set(QualityGate.objects.filter(job__in=jobs, stage="post_gen").values_list("job_id", flat=True))
    return [job.pk in ids for job in jobs]


def test_a_burst_of_successes_gets_every_job_gated_by_the_first_task(fake, project, owner, engine, models):
    _, announced = engine
    jobs = [submit(project, owner) for _ in range(5)]
    for job in jobs:
        tasks.job_run(job.pk)  # the first session may drive them all
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)) == {"succeeded"}

    calls = announced.take()
    assert calls == [("quality.tasks.score_succeeded", job.pk) for job in jobs]  # one task per job

    assert run(calls) == ["5 scored"] + ["already scored"] * 4
    assert gated(*jobs) == [True] * 5


def test_the_task_is_pushed_to_the_queue_after_the_commit_and_never_for_a_rollback(project, owner, models, queue):
    job = succeeded(project, owner)
    with transaction.atomic():
        job_succeeded(job.pk)
        assert queued(queue) == []  # nothing before the commit
    calls = queued(queue)
    assert calls == [("quality.tasks.score_succeeded", job.pk)]

    other = succeeded(project, owner)
    with pytest.raises(RuntimeError), transaction.atomic():
        job_succeeded(other.pk)
        raise RuntimeError("the success was rolled back")
    assert queued(queue) == []

    assert run(calls) == ["2 scored"]  # a recent unscored job is taken along
    assert gated(job, other) == [True, True]


def test_an_announcement_lost_to_a_dead_broker_is_logged_and_the_next_success_scores_it(
    project, owner, models, queue, caplog
):
    working = queue.connection
    queue.connection = redis_lib.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0")  # Redis is down
    lost = succeeded(project, owner)
    try:
        with caplog.at_level(logging.WARNING, logger="quality.tasks"):
            job_succeeded(lost.pk)  # logged, not raised into the engine
    finally:
        queue.connection.close()
        queue.connection = working  # Redis is back
    assert f"could not have job {lost.pk} scored" in caplog.text
    assert queued(queue) == []

    later = succeeded(project, owner)
    job_succeeded(later.pk)

    assert run(queued(queue)) == ["2 scored"]
    assert gated(lost, later) == [True, True]


def test_older_unscored_jobs_are_left_to_score_missing(project, owner, engine, models):
    _, announced = engine
    old = succeeded(project, owner, minutes_ago=10)  # its announcement was lost long ago
    job = succeeded(project, owner)

    assert score_succeeded(job.pk) == "1 scored"
    assert gated(old, job) == [False, True]

    assert tasks.reconcile_all()["hooks"]["quality.tasks.score_missing"] == [old.pk]
    assert run(announced.take()) == ["passed"]
    assert gated(old) == [True]


def test_a_task_scores_at_most_its_limit_oldest_first(project, owner, models, monkeypatch):
    monkeypatch.setattr(catch_up, "ANNOUNCED_LIMIT", 2)
    jobs = [succeeded(project, owner, minutes_ago=4 - i * 0.1) for i in range(5)]

    assert score_succeeded(jobs[0].pk) == "2 scored"
    assert gated(*jobs) == [True, True, False, False, False]
    assert score_succeeded(jobs[1].pk) == "already scored"
    assert score_succeeded(jobs[4].pk) == "2 scored"  # its own job, and the oldest left
    assert gated(*jobs) == [True, True, True, False, True]
    assert score_succeeded(jobs[3].pk) == "1 scored"
    assert gated(*jobs) == [True] * 5


def test_a_job_whose_scoring_raises_does_not_hold_back_the_others(project, owner, models, monkeypatch, caplog):
    bad, good = succeeded(project, owner), succeeded(project, owner)
    real = scoring._measure

    def crashes_on_bad(job, assets, shared):
        if job.pk == bad.pk:
            raise RuntimeError("the decoder crashed")
        return real(job, assets, shared)

    monkeypatch.setattr(scoring, "_measure", crashes_on_bad)
    assert score_succeeded(good.pk) == "1 scored, 1 failed"
    assert gated(bad, good) == [False, True]
    assert f"scoring job {bad.pk} failed" in caplog.text

    monkeypatch.setattr(scoring, "_measure", real)  # whatever broke is fixed
    assert score_job(bad.pk) == "passed"  # score_missing's retry, one task for the job


def test_a_worker_loads_the_models_once_for_all_its_tasks(project, owner, models):
    first = succeeded(project, owner)
    assert score_succeeded(first.pk) == "1 scored"
    loaded = loaded_keys()
    assert loaded  # the networks the first task used stay loaded

    later = succeeded(project, owner)
    assert score_succeeded(later.pk) == "1 scored"

    assert loaded_keys() == loaded
