"""What one job costs the database on the engine's path: on SQLite every write transaction holds
the database's one write lock, and every other worker's claim or completion waits for it (through
SQLite's busy handler, which sleeps 1, 2, 5, 10 ms… between tries). A claim and a completion are
one write transaction each, and a claim that finds no room takes no write lock at all."""

from __future__ import annotations

import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from generation.models import Backend, JobStatus
from generation.services import claims, completion
from generation.services.submit import jobs_create
from tests.factories import make_project
from tests.generation.engine_helpers import job, shipped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

WRITES = ("INSERT", "UPDATE", "DELETE")


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_transactions(queries: list[dict[str, str]]) -> int:
    """Write transactions in a capture: each BEGIN, and each write outside one (autocommit)."""
    count, inside = 0, False
    for query in queries:
        sql = query["sql"].lstrip().upper()
        if sql.startswith("BEGIN"):
            count, inside = count + 1, True
        elif sql.startswith(("COMMIT", "ROLLBACK")):
            inside = False
        elif sql.startswith(WRITES) and not inside:
            count += 1
    return count


@pytest.fixture
def jobs(owner):
    Backend.objects.create(name="gpu-1", url="http://127.0.0.1:9", max_in_flight=1, healthy=True)
    project = make_project(owner)
    template = shipped("weightless-image")
    return jobs_create(user=owner, project=project, template=template, overrides={"width": 64}, count=3)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="counts SQLite's BEGIN IMMEDIATE")
def test_a_claim_and_a_completion_are_one_write_transaction_each(jobs):
    first, second, third = jobs
    with CaptureQueriesContext(connection) as claimed:
        claim = claims.job_claim_next(worker="w:1", client_id="c1")
    assert claim is not None and claim.job_id == first.pk
    assert write_transactions(claimed.captured_queries) == 1

    with CaptureQueriesContext(connection) as full:
        assert claims.job_claim_next(worker="w:2", client_id="c2") is None  # the one place is taken
    assert write_transactions(full.captured_queries) == 0

    # The first prompt ended: the next claim marks it so in the same transaction.
    with CaptureQueriesContext(connection) as claimed:
        assert claims.job_claim_next(worker="w:1", client_id="c1", ended=[first.pk]).job_id == second.pk
    assert write_transactions(claimed.captured_queries) == 1

    output = completion.FetchedOutput(node_id="9", filename="out.png", data=_png())
    with CaptureQueriesContext(connection) as completed:
        assert completion.job_complete(job_id=first.pk, outputs=[output], graph=claim.graph, known=claim.known)
    assert write_transactions(completed.captured_queries) == 1
    assert job(first.pk).status == JobStatus.SUCCEEDED
    assert job(third.pk).status == JobStatus.QUEUED
