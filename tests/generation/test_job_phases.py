"""A job's phase follows its template's kind; phase 2 and 3 work behind a closed gate is refused unless forced."""

from __future__ import annotations

import pytest

from generation.models import Job
from generation.services.inputs import image_source_from, template_image_inputs
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from tests.generation.engine_helpers import shipped
from tests.generation.image_input_helpers import ipadapter_job, primary_of

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("channel_layer", "shipped_templates", "one_job_per_task"),
]


CHECKED: list[dict] = []
CREATED: list[list[int]] = []


def closed_gate(*, project, character, phase):
    CHECKED.append({"project": project.pk, "character": character.pk, "phase": phase})
    return f"{character.name}'s phase {phase - 1} gate is closed: 2 of 10 recent outputs passed"


def open_gate(*, project, character, phase):
    return None


def record_created(*, job_ids):
    CREATED.append(list(job_ids))


@pytest.fixture
def hooks(settings):
    CHECKED.clear()
    CREATED.clear()
    settings.TOWER_PHASE_CHECK = f"{__name__}.closed_gate"
    settings.TOWER_ON_JOBS_CREATED = [f"{__name__}.record_created"]
    return settings


def test_job_phase_follows_the_template_kind(project, owner, kai, hooks, enqueued):
    hooks.TOWER_PHASE_CHECK = f"{__name__}.open_gate"
    image = jobs_create(user=owner, project=project, template=shipped("weightless-image"))[0]
    sheet = ipadapter_job(project, owner, character=kai)
    loop = jobs_create(user=owner, project=project, template=shipped("weightless-loop"), character=kai)[0]
    assert (image.phase, sheet.phase, loop.phase) == (1, 1, 2)
    explicit = jobs_create(user=owner, project=project, template=shipped("weightless-image"), phase=3)[0]
    assert explicit.phase == 3
    assert [[image.pk], [sheet.pk], [loop.pk], [explicit.pk]] == CREATED


def test_phase_two_work_behind_a_closed_gate_is_refused_unless_forced(project, owner, kai, hooks, enqueued):
    loop = shipped("weightless-loop")
    with pytest.raises(JobError) as refused:
        jobs_create(user=owner, project=project, template=loop, character=kai)
    assert str(refused.value) == (
        "Kai's phase 1 gate is closed: 2 of 10 recent outputs passed (an editor may force it with a reason)"
    )
    assert [{"project": project.pk, "character": kai.pk, "phase": 2}] == CHECKED
    assert Job.objects.count() == 0 and CREATED == []

    [forced] = jobs_create(user=owner, project=project, template=loop, character=kai, force_reason="client preview")
    assert Job.objects.get(pk=forced.pk).forced_reason == "client preview"
    assert any("forced past a closed phase gate" in m for m in forced.log_lines.values_list("message", flat=True))
    assert [[forced.pk]] == CREATED
    # Jobs without a character, and phase-1 work, are not checked.
    first_frame = {p: image_source_from(primary_of(kai)) for p in template_image_inputs(loop)}
    jobs_create(user=owner, project=project, template=loop, images=first_frame)
    ipadapter_job(project, owner, character=kai)
    assert len(CHECKED) == 2


def test_force_reason_through_the_api(project, api_member, kai, hooks, enqueued):
    body = {"project": project.pk, "template": "weightless-loop", "character": kai.pk}
    refused = api_member.post("/api/v1/jobs", body, format="json")
    assert refused.status_code == 400
    assert "an editor may force it" in refused.json()["non_field_errors"][0]
    forced = api_member.post("/api/v1/jobs", {**body, "force_reason": "needed for the trailer"}, format="json")
    assert forced.status_code == 201, forced.json()
    assert forced.json()["jobs"][0]["forced_reason"] == "needed for the trailer"
    assert Job.objects.get(pk=forced.json()["jobs"][0]["id"]).forced_reason == "needed for the trailer"


def test_the_first_image_input_of_each_shipped_template(enqueued):
    assert template_image_inputs(shipped("ipadapter-character")) == ["reference_image"]
    assert template_image_inputs(shipped("weightless-img2img")) == ["init_image"]
    assert template_image_inputs(shipped("weightless-image")) == []
