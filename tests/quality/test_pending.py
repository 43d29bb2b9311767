"""Jobs that succeed are scored by one pending run, not one task each, and none is left unscored."""

from __future__ import annotations

import time

import pytest
import redis as redis_lib
from django.core.files.base import ContentFile
from django.utils import timezone

from generation import tasks
from generation.models import Job, JobStatus
from generation.services.completion import announce_job_succeeded
from quality import tasks as quality_tasks
from quality.models import QualityGate
from quality.services import pending, scoring
from quality.tasks import job_succeeded, score_job, score_pending
from tests.factories import AssetFactory, JobFactory, make_project
from tests.quality.scoring_helpers import closed_port, png, submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

RUN = ("quality.tasks.score_pending",)


@pytest.fixture
def project(owner):
    return make_project(owner, threshold_aesthetic=0.0)


def succeeded(project, owner) -> Job:
    """A job that has just succeeded with one output, announced as the engine announces it."""
    job = JobFactory(project=project, created_by=owner, status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    AssetFactory(project=project, job=job, file=ContentFile(png(), name="out.png"))
    announce_job_succeeded(job.pk)
    return job


def gated(*jobs: Job) -> list[bool]:
    ids = set(QualityGate.objects.filter(job__in=jobs, stage="post_gen").values_list("job_id", flat=True))
    return [job.pk in ids for job in jobs]


def broker_down(path: str, *args, **kwargs) -> None:
    raise ConnectionError("redis is down")


def test_a_burst_of_successes_has_one_run_pending_and_every_job_gated(fake, project, owner, engine, models):
    _, announced = engine
    jobs = [submit(project, owner) for _ in range(5)]
    for job in jobs:
        tasks.job_run(job.pk)  # the first session may drive them all
    assert set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True)) == {"succeeded"}

    assert announced.take() == [RUN]  # five announcements, one task

    assert score_pending() == "5 scored"
    assert gated(*jobs) == [True] * 5
    assert announced.take() == []  # nothing was left for another run


def test_a_job_announced_while_a_run_is_pending_is_scored_by_that_run(project, owner, engine, models):
    _, announced = engine
    first = succeeded(project, owner)
    assert announced.take() == [RUN]
    second = succeeded(project, owner)  # the run has not started
    assert announced.take() == []

    assert score_pending() == "2 scored"

    assert gated(first, second) == [True, True]


class FakeClock:
    """``pending``'s view of time: sleeping advances it, and ``during_sleep`` runs meanwhile."""

    def __init__(self, during_sleep) -> None:
        self.wall, self.mono = 1_000_000.0, 0.0
        self.slept: list[float] = []
        self.during_sleep = during_sleep

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.wall += seconds
        self.mono += seconds
        self.during_sleep(len(self.slept))


def test_a_run_gathers_the_jobs_announced_while_it_waits_into_its_batch(project, owner, engine, models, monkeypatch):
    _, announced = engine
    later: list[Job] = []

    def during_sleep(n: int) -> None:  # two more jobs succeed while the run first waits
        if n == 1:
            later.extend(succeeded(project, owner) for _ in range(2))

    clock = FakeClock(during_sleep)
    monkeypatch.setattr(pending, "time", clock)
    monkeypatch.setattr(pending, "GATHER_SECONDS", 2.5)
    first = succeeded(project, owner)
    assert announced.take() == [RUN]

    assert score_pending() == "3 scored"

    # It waited 2.5 s, saw successes that had just been announced, and waited for 2.5 quiet seconds.
    assert clock.slept == [2.5, 2.5]
    assert gated(first, *later) == [True, True, True]
    assert announced.take() == []  # the later jobs found the run pending: no run of their own


def test_a_run_waits_out_a_burst_of_successes_but_not_beyond_its_limit(project, owner, engine, models, monkeypatch):
    _, announced = engine
    burst: list[Job] = []
    clock = FakeClock(lambda n: burst.append(succeeded(project, owner)))  # one more after every wait
    monkeypatch.setattr(pending, "time", clock)
    monkeypatch.setattr(pending, "GATHER_SECONDS", 1.0)
    monkeypatch.setattr(pending, "GATHER_MAX_SECONDS", 4.0)
    burst.append(succeeded(project, owner))
    assert announced.take() == [RUN]

    assert score_pending() == f"{len(burst)} scored, more pending"

    assert sum(clock.slept) == 4.0  # the burst never paused: the run started at its limit
    assert all(gated(*burst))
    # Cleared at its limit, it asked for another run: successes whose announcements were skipped
    # right before the clear may have committed after its query.
    assert announced.take() == [RUN]
    clock.during_sleep = lambda n: None  # the burst is over
    late = succeeded(project, owner)  # within the window of the last announcement: skipped
    assert announced.take() == []
    assert score_pending() == "1 scored"
    assert gated(late) == [True]


def test_a_run_does_not_wait_for_quiet_when_redis_cannot_say(project, owner, engine, models, monkeypatch):
    _, announced = engine
    clock = FakeClock(lambda n: None)
    monkeypatch.setattr(pending, "time", clock)
    monkeypatch.setattr(pending, "GATHER_SECONDS", 1.0)
    job = succeeded(project, owner)
    assert announced.take() == [RUN]
    real = quality_tasks._redis()

    class NoReads:  # the broker, except that asking whether it is quiet fails
        def __getattr__(self, name):
            return getattr(real, name)

        def eval(self, *args):
            raise redis_lib.ConnectionError("redis is down")

    monkeypatch.setattr(quality_tasks, "_redis", NoReads)

    assert score_pending() == "1 scored"

    assert clock.slept == [1.0]
    assert gated(job) == [True]


def test_an_engine_process_announces_a_burst_once_a_quarter_second(project, owner, engine, models, monkeypatch):
    """Successes within the window of the process's last announcement send nothing to Redis; the
    run, which waits for a quiet second, still scores every one of them."""
    _, announced = engine
    clock = FakeClock(lambda n: None)
    monkeypatch.setattr(pending, "time", clock)
    monkeypatch.setattr(pending, "GATHER_SECONDS", 1.0)
    real = quality_tasks._redis()
    pipelines: list[int] = []

    class Counting:  # the broker, counting the announcements' round trips
        def __getattr__(self, name):
            return getattr(real, name)

        def pipeline(self, *args, **kwargs):
            pipelines.append(1)
            return real.pipeline(*args, **kwargs)

    monkeypatch.setattr(quality_tasks, "_redis", Counting)
    burst = [succeeded(project, owner) for _ in range(4)]
    assert len(pipelines) == 1 and announced.take() == [RUN]
    clock.mono += pending.ANNOUNCE_INTERVAL  # the window has passed: the next one announces
    clock.wall += pending.ANNOUNCE_INTERVAL
    burst += [succeeded(project, owner) for _ in range(2)]
    assert len(pipelines) == 2 and announced.take() == []  # the run is still pending

    assert score_pending() == "6 scored"
    assert all(gated(*burst))
    assert clock.slept == [1.0]


def test_a_run_that_does_not_wait_for_quiet_turns_the_skipping_off(project, owner, engine, models):
    """With no gathering (as in these tests), every success announces itself."""
    _, announced = engine
    first = succeeded(project, owner)
    assert announced.take() == [RUN]
    assert score_pending() == "1 scored"
    second = succeeded(project, owner)  # at once after the first: announced all the same
    assert announced.take() == [RUN]
    assert score_pending() == "1 scored"
    assert gated(first, second) == [True, True]


def test_a_job_that_succeeds_while_a_run_is_scoring_gets_a_run_of_its_own(project, owner, engine, models, monkeypatch):
    _, announced = engine
    first = succeeded(project, owner)
    assert announced.take() == [RUN]
    late: list[Job] = []
    real = pending.jobs_score

    def meanwhile(**kwargs):  # the run has cleared the flag and read what is pending
        late.append(succeeded(project, owner))
        return real(**kwargs)

    monkeypatch.setattr(pending, "jobs_score", meanwhile)
    assert score_pending() == "1 scored"
    monkeypatch.setattr(pending, "jobs_score", real)

    assert gated(first, late[0]) == [True, False]
    assert announced.take() == [RUN]  # its announcement found no run pending
    assert score_pending() == "1 scored"  # what the worker runs next
    assert gated(late[0]) == [True]


def test_a_job_that_succeeds_between_clearing_and_reading_is_scored_once(project, owner, engine, models, monkeypatch):
    _, announced = engine
    first = succeeded(project, owner)
    announced.take()
    late: list[Job] = []
    real = pending.jobs_missing_scores

    def meanwhile(**kwargs):
        late.append(succeeded(project, owner))
        return real(**kwargs)

    monkeypatch.setattr(pending, "jobs_missing_scores", meanwhile)
    assert score_pending() == "2 scored"
    monkeypatch.setattr(pending, "jobs_missing_scores", real)

    assert gated(first, late[0]) == [True, True]
    assert announced.take() == [RUN]  # a spare run: it finds nothing and does nothing
    assert score_pending() == "0 scored"
    assert QualityGate.objects.filter(job=late[0]).count() == 1


def test_a_run_scores_at_most_its_limit_oldest_first_and_asks_for_another(project, owner, engine, models, monkeypatch):
    _, announced = engine
    monkeypatch.setattr(pending, "PENDING_LIMIT", 2)
    jobs = [succeeded(project, owner) for _ in range(5)]
    assert announced.take() == [RUN]

    assert score_pending() == "2 scored, more pending"
    assert gated(*jobs) == [True, True, False, False, False]
    assert announced.take() == [RUN]
    assert score_pending() == "2 scored, more pending"
    assert announced.take() == [RUN]
    assert score_pending() == "1 scored"

    assert gated(*jobs) == [True] * 5
    assert announced.take() == []


def test_a_flag_left_by_a_run_that_never_started_expires_and_scoring_resumes(project, owner, engine, models, broker):
    _, announced = engine
    lost = succeeded(project, owner)  # its task is lost: the worker died before it started
    assert announced.take() == [RUN]
    meanwhile = succeeded(project, owner)
    assert announced.take() == []  # a run looks pending
    redis, key = broker.connection, pending.pending_key()
    assert 0 < redis.ttl(key) <= pending.PENDING_TTL

    redis.pexpire(key, 1)  # PENDING_TTL has passed
    deadline = time.monotonic() + 5
    while redis.exists(key) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not redis.exists(key)
    later = succeeded(project, owner)

    assert announced.take() == [RUN]
    assert score_pending() == "3 scored"
    assert gated(lost, meanwhile, later) == [True, True, True]


def test_a_failed_push_leaves_no_flag_behind(project, owner, engine, models, monkeypatch):
    _, announced = engine
    monkeypatch.setattr(tasks, "async_task", broker_down)
    first = JobFactory(project=project, status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    AssetFactory(project=project, job=first, file=ContentFile(png(), name="out.png"))

    job_succeeded(first.pk)  # logged, not raised into the engine

    monkeypatch.setattr(tasks, "async_task", announced)
    second = succeeded(project, owner)
    assert announced.take() == [RUN]  # not held back by a flag without a task
    assert score_pending() == "2 scored"
    assert gated(first, second) == [True, True]


def test_a_job_whose_scoring_raises_does_not_hold_back_the_others(project, owner, engine, models, monkeypatch):
    bad, good = succeeded(project, owner), succeeded(project, owner)
    real = scoring._measure

    def crashes_on_bad(job, assets, shared):
        if job.pk == bad.pk:
            raise RuntimeError("the decoder crashed")
        return real(job, assets, shared)

    monkeypatch.setattr(scoring, "_measure", crashes_on_bad)
    assert score_pending() == "1 scored, 1 failed"
    assert gated(bad, good) == [False, True]

    later = succeeded(project, owner)
    assert score_pending() == "1 scored"  # runs leave the bad job alone for a while
    assert gated(bad, later) == [False, True]

    monkeypatch.setattr(scoring, "_measure", real)  # whatever broke is fixed
    assert score_job(bad.pk) == "passed"  # score_missing's retry, one task for the job


def test_runs_at_the_same_time_do_not_score_the_same_job_twice(project, owner, engine, models, monkeypatch):
    _, announced = engine
    early = [succeeded(project, owner), succeeded(project, owner)]
    announced.take()
    measured: list[int] = []
    real_measure, real_score = scoring._measure, pending.jobs_score

    def counting(job, assets, shared):
        measured.append(job.pk)
        return real_measure(job, assets, shared)

    second: list[str] = []

    def another_worker_meanwhile(**kwargs):  # the first run has claimed its jobs
        late = succeeded(project, owner)
        assert announced.take() == [RUN]
        monkeypatch.setattr(pending, "jobs_score", real_score)
        second.append(score_pending())  # another worker takes that run at once
        early.append(late)
        return real_score(**kwargs)

    monkeypatch.setattr(scoring, "_measure", counting)
    monkeypatch.setattr(pending, "jobs_score", another_worker_meanwhile)

    assert score_pending() == "2 scored"
    assert second == ["1 scored"]  # the late job only
    assert sorted(measured) == sorted(job.pk for job in early)  # each measured once
    assert gated(*early) == [True, True, True]
    assert score_pending() == "0 scored"


def test_a_run_that_cannot_reach_redis_still_scores_what_is_pending(project, owner, engine, models, broker, caplog):
    jobs = [succeeded(project, owner), succeeded(project, owner)]
    working = broker.connection
    broker.connection = redis_lib.Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0")  # Redis went down
    try:
        assert score_pending() == "2 scored"
    finally:
        broker.connection.close()
        broker.connection = working

    assert gated(*jobs) == [True, True]
    assert "could not clear the pending-scoring flag" in caplog.text
