from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from generation.models import Job, JobStatus
from generation.services.jobs import IllegalTransition, JobError, job_transition
from tests.factories import JobFactory, make_project


@pytest.fixture
def job(owner):
    return JobFactory(project=make_project(owner))


@pytest.mark.django_db
def test_happy_path_sets_timestamps_and_logs(job):
    job_transition(job_id=job.pk, to=JobStatus.SUBMITTED, expect=JobStatus.QUEUED, prompt_id="p1")
    job_transition(job_id=job.pk, to=JobStatus.RUNNING, expect=JobStatus.SUBMITTED)
    job_transition(job_id=job.pk, to=JobStatus.SCORING, expect=JobStatus.RUNNING)
    done = job_transition(job_id=job.pk, to=JobStatus.SUCCEEDED, expect=JobStatus.SCORING)
    assert done.status == "succeeded"
    assert done.prompt_id == "p1"
    assert done.submitted_at <= done.started_at <= done.finished_at
    assert done.progress == 1.0
    assert list(done.log_lines.values_list("message", flat=True)) == [
        "status → submitted",
        "status → running",
        "status → scoring",
        "status → succeeded",
    ]


@pytest.mark.django_db
def test_a_lost_race_returns_none_and_changes_nothing(job):
    job_transition(job_id=job.pk, to=JobStatus.CANCELLED, expect=JobStatus.QUEUED)
    # A re-delivered task tries to claim the job it no longer owns.
    assert job_transition(job_id=job.pk, to=JobStatus.SUBMITTED, expect=JobStatus.QUEUED) is None
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "target"),
    [
        ([], JobStatus.RUNNING),
        ([], JobStatus.SUCCEEDED),
        ([JobStatus.CANCELLED], JobStatus.QUEUED),
        ([JobStatus.FAILED], JobStatus.RUNNING),
    ],
)
def test_the_status_machine_refuses_illegal_moves(job, path, target):
    for step in path:
        job_transition(job_id=job.pk, to=step)
    before = Job.objects.get(pk=job.pk).status
    with pytest.raises(IllegalTransition):
        job_transition(job_id=job.pk, to=target)
    assert Job.objects.get(pk=job.pk).status == before


@pytest.mark.django_db
def test_expecting_an_illegal_source_is_refused_up_front(job):
    with pytest.raises(IllegalTransition):
        job_transition(job_id=job.pk, to=JobStatus.RUNNING, expect=JobStatus.QUEUED)


@pytest.mark.django_db
def test_unknown_job_and_unknown_status(job):
    with pytest.raises(JobError, match="does not exist"):
        job_transition(job_id=987654, to=JobStatus.CANCELLED)
    with pytest.raises(JobError, match="unknown status"):
        job_transition(job_id=job.pk, to="exploded")


@pytest.mark.django_db
def test_database_refuses_an_invalid_status_or_progress(job):
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(status="exploded")
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.filter(pk=job.pk).update(progress=1.5)


@pytest.mark.django_db
def test_a_move_writes_every_kind_of_field_as_the_orm_would(job):
    from django.db.models import F

    from generation.models import Backend
    from generation.services.jobs import job_move

    backend = Backend.objects.create(name="gpu-9", url="http://127.0.0.1:9")
    assert job_move(
        job_id=job.pk,
        to=JobStatus.SUBMITTED,
        expect=JobStatus.QUEUED,
        log=[("warning", "a note with data", {"why": ["x", 1]}), ("info", "a note without", None)],
        backend=backend,
        attempts=F("attempts") + 2,  # an expression goes through the ORM
        timings={"nodes": {"3": 0.25}},
        error_details=None,
    )
    assert job_move(job_id=job.pk, to=JobStatus.RUNNING, expect=JobStatus.SUBMITTED, eta_seconds=1.5, progress=0.5)
    assert not job_move(job_id=job.pk, to=JobStatus.RUNNING, expect=JobStatus.SUBMITTED)  # lost race: no change

    job.refresh_from_db()
    assert (job.status, job.backend_id, job.attempts, job.eta_seconds, job.progress) == (
        "running",
        backend.pk,
        2,
        1.5,
        0.5,
    )
    assert job.timings == {"nodes": {"3": 0.25}}
    assert Job.objects.filter(pk=job.pk, error_details__isnull=True).exists()  # SQL NULL, not JSON null
    assert job.submitted_at is not None and job.started_at >= job.submitted_at
    lines = list(job.log_lines.order_by("pk").values_list("level", "message", "data"))
    assert lines == [
        ("info", "status → submitted", None),
        ("warning", "a note with data", {"why": ["x", 1]}),
        ("info", "a note without", None),
        ("info", "status → running", None),
    ]
    assert job.log_lines.filter(data__isnull=True).count() == 3
