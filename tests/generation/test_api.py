"""REST API v1: jobs and assets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from characters.services import character_create
from generation.models import Job
from tests.factories import AssetFactory, BackendFactory, JobFactory, UserFactory, make_project

PERSONAS = ["owner", "member", "viewer", "outsider", "anonymous"]

# status for owner, member (editor), viewer, outsider, anonymous
READ = (200, 200, 200, 404, 401)
LIST = (200, 200, 200, 200, 401)  # the outsider's list is empty (asserted below)
NOT_ALLOWED = (405, 405, 405, 405, 401)
# An empty submission is refused before any project is looked up (tests/generation/test_jobs_api.py
# covers real submissions per persona).
INVALID = (400, 400, 400, 400, 401)

MATRIX = [
    ("get", "/api/v1/jobs/", LIST),
    ("get", "/api/v1/jobs/{job}/", READ),
    ("post", "/api/v1/jobs/", INVALID),
    ("put", "/api/v1/jobs/{job}/", NOT_ALLOWED),
    ("patch", "/api/v1/jobs/{job}/", NOT_ALLOWED),
    ("delete", "/api/v1/jobs/{job}/", NOT_ALLOWED),
    ("get", "/api/v1/assets/", LIST),
    ("get", "/api/v1/assets/{asset}/", READ),
    ("post", "/api/v1/assets/", NOT_ALLOWED),
    ("put", "/api/v1/assets/{asset}/", NOT_ALLOWED),
    ("patch", "/api/v1/assets/{asset}/", NOT_ALLOWED),
    ("delete", "/api/v1/assets/{asset}/", NOT_ALLOWED),
]


@pytest.fixture
def world(project):
    job = JobFactory(project=project, params={"steps": 15}, graph={"1": {"class_type": "EmptyImage", "inputs": {}}})
    asset = AssetFactory(project=project, job=job, width=64, height=64)
    return {"project": project.pk, "job": job.pk, "asset": asset.pk}


@pytest.mark.parametrize(("method", "url", "expected"), MATRIX, ids=[f"{m} {u}" for m, u, _ in MATRIX])
@pytest.mark.parametrize("persona", PERSONAS)
def test_access_matrix(request, world, persona, method, url, expected):
    client = request.getfixturevalue(f"api_{persona}")
    response = getattr(client, method)(url.format(**world), {}, format="json")
    want = expected[PERSONAS.index(persona)]
    assert response.status_code == want, response.content
    if want == 401:
        assert response["WWW-Authenticate"] == "Bearer"
    if persona == "outsider" and method == "get" and want == 200:
        assert response.json()["results"] == [], "an outsider's list must not leak rows"
    assert Job.objects.count() == 1


def test_job_detail_has_what_is_needed_to_reproduce_it(world, api_viewer):
    data = api_viewer.get(f"/api/v1/jobs/{world['job']}/").json()
    assert data["status"] == "queued"
    assert data["params"] == {"steps": 15}
    assert data["graph"] == {"1": {"class_type": "EmptyImage", "inputs": {}}}
    assert data["seed"] == Job.objects.get().seed
    assert data["project"] == world["project"]


def test_asset_has_its_file_url(world, api_owner):
    data = api_owner.get(f"/api/v1/assets/{world['asset']}/").json()
    assert data["file"].startswith(f"http://testserver/media/assets/{world['project']}/")
    assert data["file"].endswith(".png")
    assert data["thumbnail"] is None
    assert (data["job"], data["width"], data["mime"]) == (world["job"], 64, "image/png")


def test_job_filters_and_ordering(api_owner, project, owner):
    kai = character_create(project=project, name="Kai", design_prompt="x")
    other = make_project(owner, "Other")
    now = timezone.now()
    old = JobFactory(project=project, character=kai, kind="image", status="succeeded")
    mid = JobFactory(project=project, kind="loop", status="failed")
    new = JobFactory(project=other, kind="image", status="succeeded")
    for job, age in ((old, 3), (mid, 2), (new, 1)):
        Job.objects.filter(pk=job.pk).update(created_at=now - timedelta(hours=age))

    def ids(query: str) -> list[int]:
        response = api_owner.get(f"/api/v1/jobs/?{query}")
        assert response.status_code == 200, response.content
        return [j["id"] for j in response.json()["results"]]

    assert ids("") == [new.pk, mid.pk, old.pk]  # newest first
    assert ids("ordering=created_at") == [old.pk, mid.pk, new.pk]
    assert ids(f"project={project.pk}") == [mid.pk, old.pk]
    assert ids("status=succeeded") == [new.pk, old.pk]
    assert ids("kind=loop") == [mid.pk]
    assert ids(f"character={kai.pk}") == [old.pk]
    assert ids(f"project={project.pk}&status=succeeded") == [old.pk]
    bad = api_owner.get("/api/v1/jobs/?status=exploded")
    assert bad.status_code == 400
    assert "status" in bad.json()


def test_asset_filters(world, api_owner, project):
    other_job = JobFactory(project=project)
    video = AssetFactory(project=project, job=other_job, kind="video", mime="video/mp4")

    def ids(query: str) -> list[int]:
        return [a["id"] for a in api_owner.get(f"/api/v1/assets/?{query}").json()["results"]]

    assert ids(f"job={world['job']}") == [world["asset"]]
    assert ids("kind=video") == [video.pk]
    assert sorted(ids(f"project={project.pk}")) == sorted([world["asset"], video.pk])


def test_outsider_cannot_reach_jobs_by_filter_or_id(world, api_outsider):
    assert api_outsider.get(f"/api/v1/jobs/?project={world['project']}").json()["count"] == 0
    assert api_outsider.get(f"/api/v1/assets/?job={world['job']}").json()["count"] == 0
    assert api_outsider.get(f"/api/v1/jobs/{world['job']}/").status_code == 404


@pytest.mark.parametrize("bad", ["abc", "123456"])
def test_unknown_and_non_numeric_ids_are_404(world, api_owner, bad):
    assert api_owner.get(f"/api/v1/jobs/{bad}/").status_code == 404
    assert api_owner.get(f"/api/v1/assets/{bad}/").status_code == 404


def test_job_list_runs_a_constant_number_of_queries(api_owner, project, django_assert_max_num_queries):
    backend = BackendFactory()
    kai = character_create(project=project, name="Kai", design_prompt="x")
    creator = UserFactory(username="creator")

    def add(n: int) -> None:
        for _ in range(n):
            job = JobFactory(project=project, character=kai, backend=backend, created_by=creator)
            AssetFactory(project=project, job=job)

    add(2)
    with django_assert_max_num_queries(2):
        small = api_owner.get("/api/v1/jobs/")
    with django_assert_max_num_queries(2):
        api_owner.get("/api/v1/assets/")
    add(15)
    with django_assert_max_num_queries(2):
        large = api_owner.get("/api/v1/jobs/")
    with django_assert_max_num_queries(2):
        assets = api_owner.get("/api/v1/assets/")
    assert small.json()["count"] == 2
    assert large.json()["count"] == 17
    assert assets.json()["count"] == 17
    assert {j["backend_name"] for j in large.json()["results"]} == {backend.name}


def test_the_job_list_is_a_summary_and_the_detail_has_the_graph_and_parameters(world, api_owner):
    listed = api_owner.get("/api/v1/jobs/").json()["results"][0]
    detail = api_owner.get(f"/api/v1/jobs/{world['job']}/").json()

    assert {"graph", "params", "overrides", "timings", "error_details"}.isdisjoint(listed)
    assert {name: value for name, value in detail.items() if name in listed} == listed
    assert detail["graph"] == {"1": {"class_type": "EmptyImage", "inputs": {}}}
    assert "metadata" not in api_owner.get("/api/v1/assets/").json()["results"][0]
    assert "metadata" in api_owner.get(f"/api/v1/assets/{world['asset']}/").json()
