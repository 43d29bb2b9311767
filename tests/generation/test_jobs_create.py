"""jobs_create for large requests: every job of a batch is its own, checked, and stored as built."""

from __future__ import annotations

import pytest

from generation.models import Job, JobLogLine
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db


@pytest.fixture
def template():
    return shipped("weightless-image")


def test_every_job_of_a_grid_batch_has_its_own_seed_graph_and_parameters(owner, project, template, enqueued):
    seeds = list(range(1000, 1032))
    jobs = jobs_create(
        user=owner,
        project=project,
        template=template,
        overrides={"height": 64, "steps": 9},
        seeds=seeds,
        grid={"width": [64, 96]},
    )
    assert len(jobs) == 64 and all(j.pk for j in jobs)
    stored = {j.pk: j for j in Job.objects.filter(pk__in=[j.pk for j in jobs])}
    assert len(stored) == 64
    for job in jobs:
        row = stored[job.pk]
        # What the caller holds is what was written, key by key (no job got another's row).
        assert (row.seed, row.label, row.graph, row.params, row.overrides) == (
            job.seed,
            job.label,
            job.graph,
            job.params,
            job.overrides,
        )
        assert row.graph["4"]["inputs"]["seed"] == row.seed == row.params["seed"]
        assert row.graph["1"]["inputs"]["width"] == row.params["width"] == int(row.label.removeprefix("width="))
        assert row.status == "queued" and row.created_at is not None and row.batch == jobs[0].batch
    assert sorted((j.label, j.seed) for j in jobs) == sorted((f"width={w}", s) for w in (64, 96) for s in seeds)
    # Separate objects: changing one job's fields in hand leaves the others alone.
    jobs[1].overrides["width"] = 1
    jobs[1].params["seed"] = -1
    assert jobs[2].overrides["width"] == jobs[0].overrides["width"] == 64
    assert jobs[2].params["seed"] != -1 and jobs[0].params["seed"] != -1
    # The request overrides a parameter the template does not use: one warning line per job.
    assert JobLogLine.objects.filter(job__in=jobs, level="warning").count() == 64


def test_a_bad_seed_anywhere_in_a_batch_refuses_the_whole_request(owner, project, template, enqueued):
    with pytest.raises(JobError, match="seed must be between 0 and"):
        jobs_create(user=owner, project=project, template=template, seeds=[1, 2, 3, 2**64])
    assert Job.objects.count() == 0 and enqueued.take() == []


def test_jobs_created_can_be_saved_again_as_updates(owner, project, template, enqueued):
    jobs = jobs_create(user=owner, project=project, template=template, seeds=[7, 8])
    jobs[1].label = "kept"
    jobs[1].save(update_fields=["label"])
    assert Job.objects.count() == 2
    assert Job.objects.get(pk=jobs[1].pk).label == "kept" and Job.objects.get(pk=jobs[0].pk).label == ""
