"""tower.rows.insert_rows: a multi-row insert that must behave like bulk_create."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from generation.models import Job
from tests.generation.engine_helpers import shipped
from tower.rows import insert_rows

pytestmark = pytest.mark.django_db


def test_rows_across_several_batches_get_their_own_keys_in_order(project, owner):
    template = shipped("weightless-image")
    jobs = [
        Job(project=project, template=template, created_by=owner, seed=i, params={"i": i}, graph={"n": {"v": i}})
        for i in range(90)
    ]
    fields = [f for f in Job._meta.concrete_fields if not f.primary_key]
    assert connection.ops.bulk_batch_size(fields, jobs) < 90 or connection.vendor == "postgresql"
    insert_rows(jobs)
    keys = [j.pk for j in jobs]
    assert len(set(keys)) == 90 and keys == sorted(keys)
    rows = dict(Job.objects.values_list("pk", "seed"))
    assert all(rows[j.pk] == j.seed for j in jobs)
    back = Job.objects.get(pk=jobs[57].pk)
    assert (back.params, back.graph, back.project_id, back.created_by_id) == (
        {"i": 57},
        {"n": {"v": 57}},
        project.pk,
        owner.pk,
    )
    assert back.created_at is not None and back.status == "queued"  # auto_now_add and defaults, as save() does
    assert not jobs[0]._state.adding and jobs[0]._state.db == "default"


def test_nothing_to_insert_runs_nothing(django_assert_num_queries):
    with django_assert_num_queries(0):
        insert_rows([])


def test_a_failing_row_inserts_none_of_its_batch(project):
    jobs = [Job(project=project), Job(project=project), Job(project=project, status="bogus")]
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(jobs)
    assert Job.objects.count() == 0
