"""GET /api/v1/phases: the three phases as a contract, and per project (and character) their gates."""

from __future__ import annotations

import pytest

from characters.services import character_create
from quality.models import PhaseGate, QualityGate
from tests.factories import JobFactory, make_project

pytestmark = pytest.mark.django_db


def passed_jobs(project, verdicts, *, phase=1, character=None):
    for passed in verdicts:
        job = JobFactory(project=project, phase=phase, character=character)
        QualityGate.objects.create(job=job, stage="post_gen", passed=passed, details={})


def test_the_phases_and_their_specifications(api_viewer):
    response = api_viewer.get("/api/v1/phases")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["project"], body["character"]) == (None, None)
    sheet, loop, video = body["phases"]
    assert (sheet["phase"], sheet["default_template"], sheet["width"], sheet["height"]) == (
        1,
        "character-sheet",
        1024,
        1024,
    )
    assert "character_sheet" in sheet["job_kinds"] and len(sheet["poses"]) == 8
    assert sheet["layout"] == {"columns": 4, "rows": 2}
    assert sheet["gate"]["metrics"][0]["metric"] == "face_quality"
    assert sheet["gate"]["metrics"][0]["threshold"] == 0.8
    assert (loop["frames"], loop["fps"], loop["default_template"], loop["job_kinds"]) == (
        48,
        24,
        "animatediff-loop",
        ["loop"],
    )
    assert {m["metric"]: m["threshold"] for m in loop["gate"]["metrics"]} == {
        "subject_consistency": 0.85,
        "motion_smoothness": 0.8,
        "loop_seamlessness": None,
    }
    assert (video["frames"], video["fps"], video["default_template"]) == (120, 24, "svd-video")
    overall = video["gate"]["metrics"][0]
    assert overall["metric"] == "overall" and sum(overall["weights"].values()) == pytest.approx(1.0)
    assert "state" not in sheet


def test_a_projects_thresholds_templates_and_gate_states(api_viewer, project):
    project.threshold_overall = 0.6
    project.phase_templates = {"sheet": "weightless-sheet", "loop": "weightless-loop", "video": "weightless-video"}
    project.save()
    passed_jobs(project, [True] * 10)
    passed_jobs(project, [True] * 3 + [False] * 7, phase=2)

    body = api_viewer.get(f"/api/v1/phases?project={project.pk}").json()

    sheet, loop, video = body["phases"]
    assert body["project"] == project.pk
    assert [p["default_template"] for p in body["phases"]] == [
        "weightless-sheet",
        "weightless-loop",
        "weightless-video",
    ]
    assert video["gate"]["metrics"][0]["threshold"] == 0.6
    assert sheet["state"] == {
        "is_open": True,
        "pass_ratio": 1.0,
        "sample_size": 10,
        "overridden": False,
        "reason": None,
        "opened_by": "window",
    }
    assert loop["state"]["is_open"] is False and loop["state"]["pass_ratio"] == 0.3
    assert loop["state"]["reason"] == (
        "Skyline Academy's phase 2 gate is closed: 3 of the last 10 loops passed (needs 80% of 10)"
    )
    assert video["state"]["sample_size"] == 0


def test_a_characters_gates_and_an_override(api_viewer, project, admin_user):
    aiko = character_create(project=project, name="Aiko", design_prompt="1girl", consistency_threshold=0.9)
    passed_jobs(project, [True] * 10)  # the project's outputs, not Aiko's
    PhaseGate.objects.create(
        project=project, character=aiko, phase=2, is_open=False, overridden_by=admin_user, override_reason="off-model"
    )

    body = api_viewer.get(f"/api/v1/phases?project={project.pk}&character={aiko.pk}").json()

    sheet, loop, _ = body["phases"]
    assert body["character"] == aiko.pk
    assert sheet["gate"]["metrics"][0]["similarity_threshold"] == 0.9  # the character's own
    assert sheet["state"]["is_open"] is False and sheet["state"]["sample_size"] == 0
    assert sheet["state"]["reason"].startswith("Aiko's phase 1 gate is closed: 0 of the last 0")
    assert loop["state"]["overridden"] is True
    assert loop["state"]["reason"] == "Aiko's phase 2 gate was closed by hand: off-model"
    # The character alone names its project.
    assert api_viewer.get(f"/api/v1/phases?character={aiko.pk}").json()["project"] == project.pk


def test_outsiders_get_404_and_the_signed_out_are_refused(api_outsider, api_anonymous, api_owner, project, outsider):
    aiko = character_create(project=project, name="Aiko", design_prompt="1girl")
    elsewhere = make_project(outsider, name="Elsewhere")

    assert api_outsider.get(f"/api/v1/phases?project={project.pk}").status_code == 404
    assert api_outsider.get(f"/api/v1/phases?character={aiko.pk}").status_code == 404
    assert api_outsider.get(f"/api/v1/phases?project={elsewhere.pk}&character={aiko.pk}").status_code == 404
    assert api_owner.get(f"/api/v1/phases?project={elsewhere.pk}").status_code == 404
    assert api_owner.get("/api/v1/phases?project=abc").status_code == 404
    assert api_anonymous.get("/api/v1/phases").status_code in (401, 403)
    assert api_anonymous.get(f"/api/v1/phases?project={project.pk}").status_code in (401, 403)
