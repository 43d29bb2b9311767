"""The studio's list pages ask the database the same number of questions whatever the rows: a
page that grew a query per row (or per project) would be the first to slow down at studio scale
(bench/scale.py measures the time; this guards the shape)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from generation.models import JobStatus
from tests.factories import AssetFactory, CharacterFactory, JobFactory, make_project
from training.models import DatasetImage, DatasetSource

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def queries(client: Client, url: str) -> int:
    client.get(url)  # sessions and caches warmed, as on a second visit
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def add_studio_rows(owner, project, n: int) -> None:
    character = CharacterFactory.create(project=project)
    for i in range(n):
        status = JobStatus.RUNNING if i % 5 == 0 else JobStatus.SUCCEEDED
        job = JobFactory(project=project, character=character, status=status, created_by=owner)
        AssetFactory(project=project, job=job)
        DatasetImage.objects.create(
            character=character,
            image=f"datasets/{character.pk}/{i}.png",
            sha256=f"{i:064x}",
            source=DatasetSource.UPLOAD,
        )


@pytest.mark.parametrize(
    "url",
    [
        reverse("dashboard"),
        reverse("job-list"),
        reverse("job-list") + "?status=succeeded",
        reverse("gallery"),
        reverse("gallery") + "?status=passed",
        reverse("review"),
    ],
)
def test_same_queries_with_5_and_50_rows_in_more_projects(owner, project, url):
    client = client_for(owner)
    add_studio_rows(owner, project, 5)
    few = queries(client, url)
    for n in range(3):
        add_studio_rows(owner, make_project(owner, name=f"Second unit {n}"), 15)
    assert queries(client, url) == few


def test_job_list_and_gallery_pages_further_back_cost_the_same(owner, project):
    client = client_for(owner)
    add_studio_rows(owner, project, 60)
    for url in (reverse("job-list"), reverse("gallery")):
        first = queries(client, url)
        assert queries(client, f"{url}?page=2") == first


def test_gallery_pages_without_a_count_still_lead_on_and_back(owner, project):
    client = client_for(owner)
    add_studio_rows(owner, project, 60)  # a page and a quarter
    first = client.get(reverse("gallery")).content.decode()
    assert "Page 1" in first and "page=2" in first and "Page 1 of" not in first
    second = client.get(reverse("gallery"), {"page": 2}).content.decode()
    assert "Page 2" in second and "page=1" in second and "page=3" not in second
