"""Inspecting jobs: the jobs list names each job (thumbnail, template, prompt start) and the job
page gives the exact graph submitted as an API-format .json download and links the debug view."""

from __future__ import annotations

import json

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse

from generation.models import JobStatus
from tests.factories import AssetFactory, JobFactory, TemplateFactory, png_bytes

pytestmark = pytest.mark.django_db

GRAPH = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 4242, "steps": 28, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "counterfeit_v3.safetensors"}},
}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_jobs_list_rows_show_thumbnail_template_and_prompt_start(owner, project):
    done = JobFactory(
        project=project,
        status=JobStatus.SUCCEEDED,
        template=TemplateFactory(name="Portrait SDXL"),
        prompt="1boy, dark hair with neon blue streaks, cybernetic eye, rain at night, " * 3,
    )
    queued = JobFactory(project=project, template=TemplateFactory(name="Loop clip"))
    html = client_for(owner).get(reverse("job-list")).content.decode()
    row = html[html.index(f'id="job-row-{done.pk}"') :].split("</tr>")[0]
    assert f'src="{reverse("job-thumb", args=[done.pk])}"' in row
    assert "Portrait SDXL" in row
    assert "1boy, dark hair with neon blue streaks" in row and "…" in row  # the start, not all of it
    queued_row = html[html.index(f'id="job-row-{queued.pk}"') :].split("</tr>")[0]
    assert "Loop clip" in queued_row and "job-thumb" not in queued_row and "<img" not in queued_row


def test_job_thumb_is_its_first_outputs_thumbnail_or_a_placeholder(owner, outsider, project):
    job = JobFactory(project=project, status=JobStatus.SUCCEEDED)
    first = AssetFactory(project=project, job=job, file=ContentFile(png_bytes(200, 100), name="a.png"))
    AssetFactory(project=project, job=job, file=ContentFile(png_bytes(100, 200), name="b.png"))
    client = client_for(owner)
    response = client.get(reverse("job-thumb", args=[job.pk]))
    first.refresh_from_db()
    assert response.status_code == 302 and first.thumbnail and response.url == first.thumbnail.url
    empty = JobFactory(project=project)
    assert client.get(reverse("job-thumb", args=[empty.pk])).url.endswith("no-thumbnail.svg")
    assert client_for(outsider).get(reverse("job-thumb", args=[job.pk])).status_code == 404


def test_workflow_download_is_the_submitted_graph_as_json(owner, outsider, project):
    job = JobFactory(project=project, graph=GRAPH, status=JobStatus.SUCCEEDED)
    client = client_for(owner)
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert f'href="{reverse("job-workflow-json", args=[job.pk])}" download' in page
    assert f'href="{reverse("job-debug", args=[job.pk])}"' in page
    response = client.get(reverse("job-workflow-json", args=[job.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="tower-job-{job.pk}-workflow-api.json"'
    assert json.loads(response.content) == GRAPH
    assert client_for(outsider).get(reverse("job-workflow-json", args=[job.pk])).status_code == 404


def test_a_job_not_yet_submitted_has_no_workflow_to_download(owner, project):
    job = JobFactory(project=project)
    client = client_for(owner)
    assert client.get(reverse("job-workflow-json", args=[job.pk])).status_code == 404
    page = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "Workflow: not submitted yet" in page and reverse("job-workflow-json", args=[job.pk]) not in page


def test_job_page_output_tiles_cost_no_query_each(owner, project, django_assert_max_num_queries):
    job = JobFactory(project=project, status=JobStatus.SUCCEEDED, graph=GRAPH)
    AssetFactory(project=project, job=job)
    client = client_for(owner)
    with django_assert_max_num_queries(40) as few:
        client.get(reverse("job-detail", args=[job.pk]))
    for _ in range(8):
        AssetFactory(project=project, job=job)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = client.get(reverse("job-detail", args=[job.pk])).content.decode()
    assert html.count("data-asset=") == 9
