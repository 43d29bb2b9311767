"""Phase gates open at ≥ phase_pass_ratio of the last phase_window scored outputs; overrides need a reason;
evaluating them once after a batch of scored jobs has the outcome of evaluating after each."""

from __future__ import annotations

import pytest

from characters.services import character_create
from quality.models import PhaseGate, QualityGate
from quality.services.common import QualityError
from quality.services.phases import phase_gate_evaluate, phase_gate_override, phase_gates_after_scoring
from tests.factories import JobFactory, make_project

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


def twins(owner, **fields):
    """Two projects alike, each with a character alike."""
    out = []
    for name in ("One at a time", "In a batch"):
        project = make_project(owner, name=name, **fields)
        out.append((project, character_create(project=project, name="Kai", design_prompt="1boy")))
    return out


def state(project):
    project.refresh_from_db()
    gates = PhaseGate.objects.filter(project=project).order_by("character_id", "phase")
    return project.phase, [(g.character_id is None, g.phase, g.is_open, g.sample_size, g.pass_ratio) for g in gates]


@pytest.mark.parametrize(
    "verdicts",
    [
        [True, True, True, False, False, None],  # opens after the third, closed again by the end
        [False, None, True, True, True],  # opens only with the last
        [None, None],  # nothing evaluated
    ],
)
def test_a_batch_leaves_the_phase_gates_as_evaluating_after_each_job_does(owner, verdicts):
    (alone, kai), (batched, kai2) = twins(owner, phase_window=3, phase_pass_ratio=1.0)
    for project, character in ((alone, kai), (batched, kai2)):
        scored(project, [False, True], character=character)  # history before the batch
    made = []
    for passed in verdicts:
        job = JobFactory(project=alone, phase=1, character=kai)
        QualityGate.objects.create(job=job, stage="post_gen", passed=passed, details={})
        phase_gate_evaluate(project=alone, phase=1)
        phase_gate_evaluate(project=alone, phase=1, character=kai)
        job = JobFactory(project=batched, phase=1, character=kai2)
        made.append((job, QualityGate.objects.create(job=job, stage="post_gen", passed=passed, details={})))

    phase_gates_after_scoring(scored=made)

    assert state(batched) == state(alone)


def test_an_overridden_gate_keeps_its_state_through_a_batch(owner, admin_user):
    (alone, _), (batched, _) = twins(owner, phase_window=2)
    made = []
    for project in (alone, batched):
        phase_gate_override(project=project, phase=1, is_open=False, reason="not yet", user=admin_user)
    for passed in (True, True, True):
        job = JobFactory(project=alone, phase=1)
        QualityGate.objects.create(job=job, stage="post_gen", passed=passed, details={})
        phase_gate_evaluate(project=alone, phase=1)
        job = JobFactory(project=batched, phase=1)
        made.append((job, QualityGate.objects.create(job=job, stage="post_gen", passed=passed, details={})))

    phase_gates_after_scoring(scored=made)

    assert state(batched) == state(alone)
    assert state(batched)[0] == 1  # closed by hand: no advance
