"""Submitting through generation writes each job's pre_gen gate (pre-flight and image inputs) after
commit, and a character's phase-2 work behind a closed phase-1 gate is refused with the reason."""

from __future__ import annotations

import io

import pytest

from characters.services import character_add_reference, character_create
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from quality.models import QualityGate
from tests.generation.engine_helpers import shipped
from tests.quality.scoring_helpers import png, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def kai(project):
    character = character_create(project=project, name="Kai", design_prompt="1boy")
    character_add_reference(character=character, upload=io.BytesIO(png(square=40)), original_name="kai.png")
    return character


def test_accepted_and_refused_jobs_get_their_pre_gen_gate(fake, project, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        accepted = submit(project, owner)
    with django_capture_on_commit_callbacks(execute=True):
        [refused] = jobs_create(
            user=owner,
            project=project,
            template=shipped("txt2img-sd15"),
            overrides={"width": 64, "height": 64, "checkpoint": "missing.safetensors"},
        )

    gate = QualityGate.objects.get(job=accepted, stage="pre_gen")
    assert gate.passed is True and gate.details["preflight"] == {"passed": True, "message": ""}
    assert gate.details["inputs"] == []
    assert refused.error_type == "preflight"
    no = QualityGate.objects.get(job=refused, stage="pre_gen")
    assert no.passed is False
    assert "checkpoint 'missing.safetensors'" in no.details["preflight"]["message"]


def test_a_characters_job_records_the_reference_it_was_given(
    fake, project, owner, kai, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(project, owner, slug="weightless-img2img", character=kai)

    [given] = QualityGate.objects.get(job=job, stage="pre_gen").details["inputs"]
    reference = kai.references.get()
    assert given["parameter"] == "init_image" and given["sha256"] == reference.sha256
    assert given["name"].startswith(f"tower-{reference.sha256[:24]}")


def test_phase_2_work_behind_a_closed_gate_is_refused_unless_forced(
    fake, project, owner, kai, django_capture_on_commit_callbacks
):
    with pytest.raises(JobError, match=r"Kai's phase 1 gate is closed: 0 of the last 0 phase-1 outputs passed"):
        submit(project, owner, slug="weightless-loop", character=kai)

    with django_capture_on_commit_callbacks(execute=True):
        job = submit(project, owner, slug="weightless-loop", character=kai, force_reason="client preview")

    assert job.forced_reason == "client preview" and job.phase == 2
    gate = QualityGate.objects.get(job=job, stage="pre_gen")
    assert gate.details["forced_reason"] == "client preview"
