"""Phase gates open at ≥ phase_pass_ratio of the last phase_window scored outputs; overrides need a reason."""

from __future__ import annotations

import pytest

from characters.services import character_create
from quality.models import PhaseGate, QualityGate
from quality.services.common import QualityError
from quality.services.phases import phase_gate_evaluate, phase_gate_override
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db


def scored(project, verdicts, phase=1, character=None):
    for passed in verdicts:
        job = JobFactory(project=project, phase=phase, character=character)
        QualityGate.objects.create(job=job, stage="post_gen", passed=passed, details={})


def test_opens_at_80_percent_of_the_last_ten_and_advances_the_project(project):
    scored(project, [False] * 5)  # old failures fall out of the window
    scored(project, [False] + [True] * 7 + [False] * 2)
    gate = phase_gate_evaluate(project=project, phase=1)
    assert (gate.is_open, gate.sample_size, gate.pass_ratio) == (False, 10, 0.7)
    project.refresh_from_db()
    assert project.phase == 1

    scored(project, [True])
    gate = phase_gate_evaluate(project=project, phase=1)
    assert (gate.is_open, gate.pass_ratio) == (True, 0.8)
    project.refresh_from_db()
    assert project.phase == 2


def test_a_window_not_yet_full_stays_closed_and_not_evaluated_gates_do_not_count(project):
    scored(project, [True] * 9 + [None] * 5)

    gate = phase_gate_evaluate(project=project, phase=1)

    assert (gate.is_open, gate.sample_size, gate.pass_ratio) == (False, 9, 1.0)


def test_character_gates_count_only_the_characters_outputs_and_do_not_advance(project):
    kai = character_create(project=project, name="Kai", design_prompt="1boy")
    scored(project, [True] * 10, character=kai)
    scored(project, [False] * 10)

    gate = phase_gate_evaluate(project=project, phase=1, character=kai)

    assert gate.is_open and gate.character == kai
    assert not phase_gate_evaluate(project=project, phase=1).is_open
    project.refresh_from_db()
    assert project.phase == 1


def test_phase_gate_api(api_owner, api_viewer, api_outsider, project):
    scored(project, [True] * 10, phase=2)
    project.phase = 2
    project.save()
    url = "/api/v1/quality/phase-gate/2"

    response = api_owner.post(url, {"project": project.pk}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["is_open"] is True and response.json()["sample_size"] == 10
    project.refresh_from_db()
    assert project.phase == 3
    assert api_owner.post("/api/v1/quality/phase-gate/4", {"project": project.pk}, format="json").status_code == 400
    assert api_viewer.post(url, {"project": project.pk}, format="json").status_code == 403
    assert api_outsider.post(url, {"project": project.pk}, format="json").status_code == 404


def test_an_override_needs_staff_and_a_reason_and_survives_evaluation(project, owner, admin_user):
    with pytest.raises(QualityError, match="say why"):
        phase_gate_override(project=project, phase=1, is_open=True, reason="  ", user=admin_user)
    with pytest.raises(QualityError, match="staff"):
        phase_gate_override(project=project, phase=1, is_open=True, reason="looks good", user=owner)

    gate = phase_gate_override(project=project, phase=1, is_open=True, reason="director approved", user=admin_user)

    assert (gate.is_open, gate.overridden_by, gate.override_reason) == (True, admin_user, "director approved")
    project.refresh_from_db()
    assert project.phase == 2
    scored(project, [False] * 10)
    gate = phase_gate_evaluate(project=project, phase=1)
    assert gate.is_open and gate.pass_ratio == 0.0  # recorded, but the person's decision stands
    assert PhaseGate.objects.filter(project=project, phase=1).count() == 1
