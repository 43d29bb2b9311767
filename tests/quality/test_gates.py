"""A failed post-generation gate regenerates with a new seed, at most max_regenerations times."""

from __future__ import annotations

import pytest

from generation import tasks
from generation.models import Job
from quality.models import QualityGate
from quality.tasks import score_job
from tests.factories import make_project
from tests.quality.scoring_helpers import submit

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


def run_and_score(job_id: int) -> str:
    assert tasks.job_run(job_id) == "succeeded"
    return score_job(job_id)


def test_a_failing_gate_spawns_children_with_new_seeds_and_stops_at_the_limit(fake, owner, engine, models):
    runs, _ = engine
    # The tiny aesthetic head scores ~0.03, far below 5.5: every attempt fails.
    project = make_project(owner, threshold_aesthetic=5.5, max_regenerations=2)
    original = submit(project, owner)
    runs.take()

    assert run_and_score(original.pk) == "failed"
    [child] = runs.take()
    assert run_and_score(child) == "failed"
    [grandchild] = runs.take()
    assert run_and_score(grandchild) == "failed"
    assert runs.take() == []  # bounded: two regenerations, then no more

    chain = [Job.objects.get(pk=pk) for pk in (original.pk, child, grandchild)]
    assert chain[1].parent_id == original.pk and chain[2].parent_id == child
    assert len({j.seed for j in chain}) == 3
    assert chain[1].prompt == original.prompt and chain[1].template_id == original.template_id
    gates = [QualityGate.objects.get(job=j, stage="post_gen") for j in chain]
    assert [g.details.get("regenerated_as") for g in gates] == [child, grandchild, None]
    assert gates[2].details["regeneration"] == "limit reached (2 regenerations)"
    best = max(gates, key=lambda g: g.details["combined_score"])
    assert {g.details["kept_job"] for g in gates} == {best.job_id}
    assert [g.details["kept"] for g in gates].count(True) == 1 and best.details["kept"]


def test_no_regeneration_when_the_limit_is_zero(fake, owner, engine, models):
    runs, _ = engine
    project = make_project(owner, threshold_aesthetic=5.5, max_regenerations=0)
    job = submit(project, owner)
    runs.take()

    assert run_and_score(job.pk) == "failed"

    assert runs.take() == []
    assert not Job.objects.filter(parent=job).exists()
    assert QualityGate.objects.get(job=job, stage="post_gen").details["kept_job"] == job.pk


def test_a_passing_gate_does_not_regenerate(fake, owner, engine, models):
    runs, _ = engine
    project = make_project(owner, threshold_aesthetic=0.0)
    job = submit(project, owner)
    runs.take()

    assert run_and_score(job.pk) == "passed"

    assert runs.take() == []
