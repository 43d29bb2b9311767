"""POST /api/v1/jobs and the job actions, for every persona."""

from __future__ import annotations

import pytest

from generation.models import Job, JobStatus
from generation.services.jobs import job_transition
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db


@pytest.fixture
def template():
    return shipped("weightless-image")


def body(project, template, **extra):
    return {"project": project.pk, "template": template.slug, "overrides": {"width": 64, "height": 64}, **extra}


def test_owner_submits_a_batch_that_is_queued_and_handed_to_workers(
    api_owner, project, template, enqueued, django_capture_on_commit_callbacks
):
    from tests.factories import BackendFactory

    BackendFactory(max_in_flight=2, healthy=True)  # two free slots
    with django_capture_on_commit_callbacks(execute=True):
        response = api_owner.post("/api/v1/jobs", body(project, template, count=3, prompt="rooftop"), format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert len(data["jobs"]) == 3 and data["batch"]
    assert {j["status"] for j in data["jobs"]} == {"queued"}
    assert len({j["seed"] for j in data["jobs"]}) == 3  # a fresh seed each
    # A task per free slot; each claims the next queued job itself when its own is done.
    assert enqueued.take() == sorted(j["id"] for j in data["jobs"])[:2]
    assert all("rooftop" in j["prompt"] for j in data["jobs"])


def test_grid_makes_one_job_per_cell_with_labels(api_member, project, template, enqueued):
    payload = body(project, template, seeds=[5], grid={"width": [64, 128], "height": [64, 96]})
    response = api_member.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 201, response.json()
    labels = sorted(j["label"] for j in response.json()["jobs"])
    assert labels == ["width=128, height=64", "width=128, height=96", "width=64, height=64", "width=64, height=96"]
    assert {j["seed"] for j in response.json()["jobs"]} == {5}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"overrides": {"banana": 1}}, "unknown override"),
        ({"count": 65}, "count"),
        ({"seeds": [1, 2], "grid": {"width": [64] * 16, "height": [64, 72, 80]}}, "at most 64"),
        ({"overrides": {"steps": -3}}, "steps"),
        # Two answers to "how many jobs" are refused, not one of them silently dropped.
        ({"seeds": [1, 2], "count": 3}, "give seeds (one job each) or count"),
        ({"seeds": [1, 2], "count": 2}, "not both"),
    ],
)
def test_bad_requests_get_400_and_create_nothing(api_owner, project, template, enqueued, extra, message):
    payload = {**body(project, template), **extra}
    response = api_owner.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 400
    assert message in str(response.json())
    assert Job.objects.count() == 0
    assert enqueued.take() == []


def test_unknown_template_and_foreign_character_are_404(api_owner, project, template, enqueued, outsider):
    from characters.services import character_create
    from tests.factories import make_project

    assert (
        api_owner.post("/api/v1/jobs", {**body(project, template), "template": "nope"}, format="json").status_code
        == 404
    )
    foreign = character_create(project=make_project(outsider, "Theirs"), name="X", design_prompt="x")
    response = api_owner.post("/api/v1/jobs", body(project, template, character=foreign.pk), format="json")
    assert response.status_code == 404
    assert Job.objects.count() == 0


def test_viewer_is_refused_and_outsider_sees_no_project(
    api_viewer, api_outsider, api_anonymous, project, template, enqueued
):
    assert api_viewer.post("/api/v1/jobs", body(project, template), format="json").status_code == 403
    assert api_outsider.post("/api/v1/jobs", body(project, template), format="json").status_code == 404
    assert api_anonymous.post("/api/v1/jobs", body(project, template), format="json").status_code in (401, 403)
    assert Job.objects.count() == 0


def _one(api, project, template) -> dict:
    return api.post("/api/v1/jobs", body(project, template), format="json").json()["jobs"][0]


def test_cancel_retry_reproduce_debug_for_each_persona(
    api_owner, api_member, api_viewer, api_outsider, project, template, enqueued
):
    job = _one(api_owner, project, template)
    url = f"/api/v1/jobs/{job['id']}"
    assert api_outsider.post(f"{url}/cancel").status_code == 404
    assert api_viewer.post(f"{url}/cancel").status_code == 403
    cancelled = api_member.post(f"{url}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api_member.post(f"{url}/cancel").status_code == 400  # already cancelled
    assert api_member.post(f"{url}/reproduce").status_code == 400  # not succeeded

    retried = api_owner.post(f"{url}/retry")
    assert retried.status_code == 201
    assert retried.json()["parent"] == job["id"] and retried.json()["seed"] == job["seed"]
    assert api_viewer.post(f"{url}/retry").status_code == 403

    done = Job.objects.get(pk=retried.json()["id"])
    job_transition(job_id=done.pk, to=JobStatus.SUBMITTED)
    job_transition(job_id=done.pk, to=JobStatus.SUCCEEDED)
    reproduced = api_owner.post(f"/api/v1/jobs/{done.pk}/reproduce")
    assert reproduced.status_code == 201 and reproduced.json()["reproduce_of"] == done.pk

    debug = api_viewer.get(f"/api/v1/jobs/{reproduced.json()['id']}/debug")
    assert debug.status_code == 200
    data = debug.json()
    assert data["job"]["graph"] == done.graph
    assert data["reproduction"] == {
        "original": done.pk,
        "identical": None,
        "original_sha256": [],
        "reproduced_sha256": [],
    }
    assert api_outsider.get(f"/api/v1/jobs/{done.pk}/debug").status_code == 404
    assert [line["message"] for line in api_owner.get(f"{url}/debug").json()["log"]][-1] == "cancelled by member"


def _sd15_body(project, **extra):
    return {"project": project.pk, "template": "txt2img-sd15", "overrides": {"width": 64, "height": 64}, **extra}


def test_a_request_whose_jobs_all_fail_pre_flight_is_a_422_with_the_reasons(fake, api_owner, project, enqueued):
    from tests.generation.engine_helpers import backend_for

    backend_for(fake)
    shipped("txt2img-sd15")
    payload = _sd15_body(project, count=2)
    payload["overrides"]["checkpoint"] = "missing.safetensors"
    response = api_owner.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 422, response.json()
    data = response.json()
    assert "no job could run" in data["detail"] and "checkpoint 'missing.safetensors'" in data["detail"]
    assert len(data["reasons"]) == 1  # the same reason for both jobs, said once
    assert [f["job"] for f in data["failed"]] == [j["id"] for j in data["jobs"]]
    assert {f["error_node"] for f in data["failed"]} == {"#4 CheckpointLoaderSimple"}
    for job in Job.objects.all():
        assert (job.status, job.error_type, job.error_node) == ("failed", "preflight", "#4 CheckpointLoaderSimple")
    assert enqueued.take() == []


def test_a_request_with_some_jobs_refused_is_a_201_that_lists_them(fake, api_owner, project, enqueued):
    from tests.generation.engine_helpers import backend_for

    backend_for(fake)
    shipped("txt2img-sd15")
    payload = _sd15_body(project, grid={"checkpoint": ["anime_v1.safetensors", "missing.safetensors"]})
    response = api_owner.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    refused = {j["id"] for j in data["jobs"] if j["label"] == "checkpoint=missing.safetensors"}
    assert [f["job"] for f in data["failed"]] == list(refused)
    assert "missing.safetensors" in data["failed"][0]["reason"]
    assert {j["status"] for j in data["jobs"] if j["id"] not in refused} == {"queued"}


def test_retrying_a_pre_flight_refusal_is_refused_until_a_backend_changes(fake, api_owner, project, enqueued):
    from generation.services.reconcile import backend_refresh
    from generation.services.submit import job_retry_check
    from tests.generation.engine_helpers import backend_for

    backend = backend_for(fake)
    shipped("txt2img-sd15")
    payload = _sd15_body(project)
    payload["overrides"]["checkpoint"] = "missing.safetensors"
    [failed] = api_owner.post("/api/v1/jobs", payload, format="json").json()["jobs"]
    check = job_retry_check(job=Job.objects.get(pk=failed["id"]))
    assert not check.possible and "nothing has changed" in check.reason and "missing.safetensors" in check.reason
    response = api_owner.post(f"/api/v1/jobs/{failed['id']}/retry")
    assert response.status_code == 400 and "nothing has changed" in str(response.json())
    assert Job.objects.count() == 1
    # The checkpoint is installed on the server: the retry can now run.
    fake.configure(checkpoints=["anime_v1.safetensors", "missing.safetensors"])
    backend_refresh(backend=backend, force_object_info=True)
    assert job_retry_check(job=Job.objects.get(pk=failed["id"])).possible
    assert api_owner.post(f"/api/v1/jobs/{failed['id']}/retry").status_code == 201
