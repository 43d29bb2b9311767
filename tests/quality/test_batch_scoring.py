"""Scoring jobs in a batch stores exactly what scoring them one at a time stores, in few queries."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from characters.services import character_add_reference, character_create
from generation.models import Job, JobKind, JobLogLine, JobStatus
from quality import weights
from quality.models import QualityGate, QualityScore
from quality.services import scoring
from quality.services.scoring import jobs_score
from quality.tasks import score_job
from tests.factories import AssetFactory, JobFactory, make_project
from tests.quality.scoring_helpers import png
from tests.quality.test_loop_gate import apng, pan
from tests.quality.test_quality_api import mp4

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner):
    # Passing, failing (a loop's seam) and unreadable outputs; a failure regenerates at most once.
    project = make_project(owner, art_kind="photoreal", threshold_aesthetic=0.0, max_regenerations=1)
    project.threshold_overall = 0.0  # the video's composite passes, like its aesthetic (not a project_create field)
    project.save(update_fields=["threshold_overall"])
    return project


def jobs_of_every_kind(project, owner) -> list[Job]:
    kai = character_create(project=project, name=f"Kai {Job.objects.count()}", design_prompt="1boy")
    character_add_reference(character=kai, upload=io.BytesIO(png((240, 240, 240), square=40)), original_name="kai.png")
    kai.palette = ["#f0f0f0", "#101010"]
    kai.save(update_fields=["palette"])

    def job(kind: str = JobKind.IMAGE, files: tuple[tuple[bytes, str], ...] = (), **fields: Any) -> Job:
        fields.setdefault("status", JobStatus.SUCCEEDED)
        made = JobFactory(project=project, created_by=owner, kind=kind, **fields)
        for data, name in files:
            AssetFactory(project=project, job=made, file=ContentFile(data, name=name))
        return made

    return [
        job(files=((png(), "a.png"), (png((20, 200, 20)), "b.png"))),
        job(files=((png((240, 240, 240), square=40), "face.png"),), character=kai),
        job(JobKind.LOOP, files=((apng(pan(32)), "seamless.png"),)),
        job(JobKind.LOOP, files=((apng(pan(16)), "cut.png"),)),  # fails on its seam: no template to regenerate
        job(JobKind.VIDEO, files=((mp4(6), "clip.mp4"),), character=kai),
        job(files=((b"not an image", "broken.png"),)),
        job(),  # no outputs
        job(files=((png(), "late.png"),), status=JobStatus.RUNNING),  # not succeeded: not scored
    ]


def stored(jobs: list[Job]) -> list[Any]:
    """What scoring stored for each job, with the ids that differ between twin jobs left out."""

    def gate(job: Job) -> dict[str, Any] | None:
        found = QualityGate.objects.filter(job=job, stage="post_gen").first()
        if found is None:
            return None
        details = {k: v for k, v in found.details.items() if k != "kept_job"}
        for key in ("checks", "skipped"):
            details[key] = [{k: v for k, v in item.items() if k != "asset"} for item in details[key]]
        return {"passed": found.passed, **details}

    def scores(job: Job) -> list[tuple[Any, ...]]:
        return [
            (s.metric, s.value, s.threshold, s.passed, s.status, s.model_id, s.character_id, s.details)
            for s in QualityScore.objects.filter(asset__job=job).order_by("asset_id", "pk")
        ]

    def log(job: Job) -> list[str]:
        return list(JobLogLine.objects.filter(job=job).order_by("pk").values_list("message", flat=True))

    return [(gate(job), scores(job), log(job)) for job in jobs]


def test_a_batch_stores_what_scoring_one_job_at_a_time_stores(project, owner, models):
    one_by_one = jobs_of_every_kind(project, owner)
    for job in one_by_one:
        score_job(job.pk)
    batched = jobs_of_every_kind(project, owner)
    for job in batched:  # the same character for both, so reference ids compare
        if job.character_id:
            Job.objects.filter(pk=job.pk).update(character=one_by_one[1].character)

    batch = jobs_score(job_ids=[job.pk for job in batched])

    assert batch.failed == {}
    assert stored(batched) == stored(one_by_one)
    assert [batch.gates[job.pk] is not None for job in batched] == [True] * 7 + [False]
    outcomes = [batch.gates[job.pk].details["outcome"] for job in batched[:7]]  # type: ignore[union-attr]
    assert outcomes == ["passed", "passed", "passed", "failed", "passed", "failed", "not_evaluated"]


def test_scoring_a_batch_again_returns_the_gates_it_made(project, owner, models):
    jobs = jobs_of_every_kind(project, owner)
    first = jobs_score(job_ids=[job.pk for job in jobs])
    count = QualityScore.objects.count()

    again = jobs_score(job_ids=[job.pk for job in jobs])

    assert again.gates == first.gates
    assert QualityScore.objects.count() == count


def test_a_job_whose_writes_fail_costs_only_itself(project, owner, models_without, monkeypatch):
    models_without(weights.CLIP_CHECKPOINT)
    jobs = [JobFactory(project=project, status=JobStatus.SUCCEEDED) for _ in range(3)]
    for job in jobs:
        AssetFactory(project=project, job=job, file=ContentFile(png(), name="out.png"))
    real = scoring._gate

    def fails_for_the_second(measured):
        if measured.job.pk == jobs[1].pk:
            raise ValueError("cannot store that")
        return real(measured)

    monkeypatch.setattr(scoring, "_gate", fails_for_the_second)

    batch = jobs_score(job_ids=[job.pk for job in jobs])

    assert list(batch.failed) == [jobs[1].pk]
    assert [batch.gates.get(job.pk) is not None for job in jobs] == [True, False, True]
    assert not QualityScore.objects.filter(asset__job=jobs[1]).exists()  # nothing half-written
    assert QualityScore.objects.filter(asset__job=jobs[0]).exists()


def test_a_batch_without_weights_takes_a_few_queries_not_a_few_per_job(project, owner, models_without):
    models_without(weights.CLIP_CHECKPOINT)
    jobs = [JobFactory(project=project, status=JobStatus.SUCCEEDED) for _ in range(20)]
    for job in jobs:
        AssetFactory(project=project, job=job, file=ContentFile(png(), name="out.png"))

    with CaptureQueriesContext(connection) as queries:
        batch = jobs_score(job_ids=[job.pk for job in jobs])

    assert len([g for g in batch.gates.values() if g is not None]) == 20
    # Two reads, one transaction for the chunk (a log line a job), one for the phase gate: 35;
    # scoring them one at a time took 18 queries a job.
    assert len(queries) <= 2 * len(jobs)
