"""``/api/v1/orchestrations``: start, list, detail, advance, cancel; who may do what."""

from __future__ import annotations

import pytest

from generation.models import Job
from quality.models import Orchestration
from tests.quality.orchestration_helpers import WEIGHTLESS, character_with_reference, drive, flow_project, team_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner, member, viewer):
    return team_project(owner, member, viewer)


@pytest.fixture
def character(project):
    return character_with_reference(project)


def body(project, character, **extra):
    return {
        "project": project.pk,
        "character": character.pk,
        "prompt": "on a rooftop",
        "templates": WEIGHTLESS,
        **extra,
    }


def post(client, data):
    return client.post("/api/v1/orchestrations", data, format="json")


def test_post_starts_phase_one_and_answers_the_three_phases(fake, engine, api_member, project, character, member):
    response = post(api_member, body(project, character, auto_advance=False))

    assert response.status_code == 201, response.content
    data = response.json()
    assert (data["status"], data["phase"], data["auto_advance"]) == ("running", 1, False)
    assert data["templates"] == WEIGHTLESS
    assert [p["phase"] for p in data["phases"]] == [1, 2, 3]
    first, loop, _ = data["phases"]
    assert (first["status"], first["attempts"], len(first["jobs"])) == ("running", 1, 1)
    assert (loop["status"], loop["jobs"], loop["best_asset"], loop["gate"]) == ("pending", [], None, {})
    job = Job.objects.get(pk=first["jobs"][0])
    assert (job.phase, job.character_id, job.created_by_id) == (1, character.pk, member.pk)
    assert "on a rooftop" in job.prompt


def test_detail_follows_it_and_advance_approves_the_next_phase(fake, engine, api_owner, project, character):
    created = post(api_owner, body(project, character, auto_advance=False)).json()
    orchestration = drive(Orchestration.objects.get(pk=created["id"]), engine)
    assert orchestration.status == "waiting"

    detail = api_owner.get(f"/api/v1/orchestrations/{created['id']}").json()
    assert (detail["status"], detail["phase"]) == ("waiting", 2)
    sheet, loop, _ = detail["phases"]
    assert sheet["status"] == "passed" and sheet["best_asset"] is not None
    assert sheet["gate"]["not_evaluated"] is True and sheet["gate"]["reasons"]
    assert (loop["status"], loop["input_asset"]) == ("awaiting_approval", sheet["best_asset"])
    # The sheet's front view (no face scored here) was cut out and is what the loop will load.
    assert (loop["handoff"]["asset"], loop["handoff"]["panel"]) == (sheet["best_asset"], 0)
    assert loop["input_image"] == loop["handoff"]["input_image"] is not None

    response = api_owner.post(f"/api/v1/orchestrations/{created['id']}/advance")

    assert response.status_code == 200, response.content
    advanced = response.json()
    assert (advanced["status"], advanced["phases"][1]["status"], len(advanced["phases"][1]["jobs"])) == (
        "running",
        "running",
        1,
    )
    again = api_owner.post(f"/api/v1/orchestrations/{created['id']}/advance")
    assert again.status_code == 400
    assert "only an orchestration waiting for approval can advance" in again.json()["detail"][0]


def test_cancel_stops_it(fake, engine, api_owner, project, character):
    created = post(api_owner, body(project, character)).json()

    response = api_owner.post(f"/api/v1/orchestrations/{created['id']}/cancel")

    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert Job.objects.get(pk=created["phases"][0]["jobs"][0]).status == "cancelled"
    assert api_owner.post(f"/api/v1/orchestrations/{created['id']}/cancel").status_code == 400


def test_list_filters_by_project(fake, engine, api_owner, owner, project, character):
    mine = post(api_owner, body(project, character)).json()
    other = flow_project(owner, name="Other")
    post(api_owner, body(other, character_with_reference(other, name="Mei")))

    listed = api_owner.get("/api/v1/orchestrations", {"project": project.pk}).json()

    assert [o["id"] for o in listed["results"]] == [mine["id"]]
    assert len(api_owner.get("/api/v1/orchestrations").json()["results"]) == 2
    assert api_owner.get("/api/v1/orchestrations", {"project": "x"}).status_code == 400


def test_outsiders_see_nothing_and_viewers_cannot_write(
    fake, engine, api_owner, api_viewer, api_outsider, project, character
):
    created = post(api_owner, body(project, character)).json()
    url = f"/api/v1/orchestrations/{created['id']}"

    assert api_outsider.get(url).status_code == 404
    assert api_outsider.get("/api/v1/orchestrations").json()["results"] == []
    assert api_outsider.post(f"{url}/cancel").status_code == 404
    assert api_outsider.post(f"{url}/advance").status_code == 404
    assert post(api_outsider, body(project, character)).status_code == 404
    assert api_viewer.get(url).status_code == 200
    assert api_viewer.post(f"{url}/cancel").status_code == 403
    assert api_viewer.post(f"{url}/advance").status_code == 403
    assert post(api_viewer, body(project, character)).status_code == 403
    assert Orchestration.objects.get(pk=created["id"]).status == "running"
    assert Orchestration.objects.count() == 1


def test_unknown_ids_are_404(fake, engine, api_owner, project, character):
    assert api_owner.get("/api/v1/orchestrations/999999").status_code == 404
    assert api_owner.get("/api/v1/orchestrations/abc").status_code == 404
    assert api_owner.post("/api/v1/orchestrations/999999/advance").status_code == 404
    assert post(api_owner, {**body(project, character), "project": 999999}).status_code == 404
    assert post(api_owner, {**body(project, character), "character": 999999}).status_code == 404


def test_anonymous_is_refused(api_anonymous):
    assert api_anonymous.get("/api/v1/orchestrations").status_code in (401, 403)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"templates": {**WEIGHTLESS, "sheet": "nope"}}, "detail", "no workflow template 'nope' for the sheet phase"),
        (
            {"templates": {**WEIGHTLESS, "loop": "weightless-video"}},
            "detail",
            "the loop phase needs a template of kind loop",
        ),
        ({"templates": {"poster": "x"}}, "templates", "unknown template key(s) 'poster'"),
        ({"character": "kai"}, "character", "A valid integer is required."),
        ({"auto_advance": "sometimes"}, "auto_advance", "Must be a valid boolean."),
        ({"prompt": "x" * 20_001}, "prompt", "Ensure this field has no more than 20000 characters."),
    ],
)
def test_bad_input_is_400_with_the_reason(fake, engine, api_owner, project, character, change, field, message):
    response = post(api_owner, {**body(project, character), **change})

    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert not Orchestration.objects.exists()


def test_a_character_of_another_project_is_400(fake, engine, api_owner, owner, project):
    other = flow_project(owner, name="Other")
    stranger = character_with_reference(other, name="Mei")

    response = post(api_owner, body(project, stranger))

    assert response.status_code == 400
    assert response.json()["character"] == ["that character belongs to another project"]


def test_advance_unevaluated_is_editable_in_the_project_api(api_owner, api_viewer, project):
    url = f"/api/v1/projects/{project.pk}/"
    assert api_owner.get(url).json()["advance_unevaluated"] is True

    assert api_owner.patch(url, {"advance_unevaluated": False}, format="json").status_code == 200
    assert api_viewer.patch(url, {"advance_unevaluated": True}, format="json").status_code == 403

    project.refresh_from_db()
    assert project.advance_unevaluated is False
