"""How a job reads on its page and in lists: what a queued job waits for, the attempt count (as
in the admin), a cancelled job's node bars, an error naming its node once."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from generation.models import JobStatus
from generation.services.claims import job_claim
from tests.factories import BackendFactory, JobFactory

pytestmark = pytest.mark.django_db

GRAPH = {str(i): {"class_type": "X", "inputs": {}, "_meta": {"title": f"N{i}"}} for i in range(1, 4)}


def page(user, job) -> str:
    client = Client()
    client.force_login(user)
    return client.get(reverse("job-detail", args=[job.pk])).content.decode()


def test_a_job_waiting_for_a_slot_says_so_and_names_the_backend(owner, project):
    backend = BackendFactory(name="gpu-1", healthy=True, max_in_flight=1)
    JobFactory(project=project, status=JobStatus.RUNNING, backend=backend, graph=GRAPH)
    waiting = JobFactory(project=project, status=JobStatus.QUEUED, graph=GRAPH)
    assert job_claim(job_id=waiting.pk, worker="w1") is None
    html = page(owner, waiting)
    assert re.search(r"data-queued-note>Waiting for a free slot on gpu-1<", html), html
    client = Client()
    client.force_login(owner)
    assert "waiting for a free slot on gpu-1" in client.get(reverse("job-list")).content.decode()
    assert "Waiting for a backend" not in html


def test_the_attempt_count_reads_as_in_the_admin(owner, project, admin_client):
    job = JobFactory(project=project, status=JobStatus.RUNNING, attempts=1, max_attempts=3)
    assert "submission attempt 1 of 3" in page(owner, job)
    admin = admin_client.get(reverse("admin:generation_job_change", args=[job.pk])).content.decode()
    assert "Submission attempts" in admin and "1 of 3" in admin


def test_a_cancelled_job_keeps_its_node_bars(owner, project):
    job = JobFactory(project=project, status=JobStatus.CANCELLED, graph=GRAPH, current_node="N2 (#2)", progress=0.5)
    states = dict(re.findall(r'data-node="(\d+)" data-state="(\w+)"', page(owner, job)))
    assert states == {"1": "done", "2": "stopped", "3": "waiting"}


def test_an_error_names_its_node_once(owner, project):
    preflight = JobFactory(
        project=project,
        status=JobStatus.FAILED,
        error_type="preflight",
        error_node="4",
        error_message="pre-flight: node 4 (ImageAddNoise): class ImageAddNoise is not installed",
    )
    html = page(owner, preflight)
    assert "data-error-node" not in html and html.count("node 4 (ImageAddNoise)") == 1
    runtime = JobFactory(
        project=project,
        status=JobStatus.FAILED,
        error_type="RuntimeError",
        error_node="#4 ImageAddNoise",
        error_message="CUDA out of memory",
    )
    assert re.search(r"data-error-node>#4 ImageAddNoise<", page(owner, runtime))


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"  # an ICO header
