"""A job of a scene carries the scene's continuity memory in its resolved prompt (and so in its graph), and
the style LoRA the memory names in its LoRAs (pre-flight names it when the backend lacks the file)."""

from __future__ import annotations

import pytest

from characters.models import Character
from generation.models import Job, JobStatus
from generation.services.inputs import ImageSource
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from generation.workflow import TRANSFORMS
from projects.memory import memory_update
from projects.models import Episode, Scene
from tests.generation.engine_helpers import backend_for, shipped

pytestmark = pytest.mark.django_db

FIRST_FRAME = ImageSource(path="inputs/first.png", sha256="0" * 64, extension="png")


@pytest.fixture
def scenes(project):
    episode = Episode.objects.create(project=project, number=1, title="Pilot")
    one = Scene.objects.create(episode=episode, number=1, description="rooftop at dusk")
    two = Scene.objects.create(episode=episode, number=2, description="the station")
    kai = Character.objects.create(project=project, name="Kai", slug="kai", design_prompt="a boy")
    kai.scenes.set([one, two])
    memory_update(
        scene=one,
        user=None,
        patch={"characters": {str(kai.pk): {"outfit": "red coat"}}, "story": {"tension": 6}},
    )
    memory_update(scene=two, user=None, patch={"style": {"lighting": "neon"}})
    return one, two


def test_a_segment_job_of_the_next_scene_carries_the_memory_in_its_prompt(project, owner, scenes, enqueued):
    _one, two = scenes
    [job] = jobs_create(
        user=owner,
        project=project,
        template=shipped("weightless-segment"),
        scene=two,
        prompt="he runs",
        init_image=FIRST_FRAME,
    )
    assert job.prompt == "the station, Kai outfit: red coat, tension 6/10, lighting: neon, he runs"
    [tint] = [n for n in job.graph.values() if n["class_type"] == "EmptyImage"]
    assert tint["inputs"]["color"] == TRANSFORMS["color_from_text"](job.prompt)


def test_a_job_without_a_scene_carries_no_memory(project, owner, scenes, enqueued):
    [job] = jobs_create(
        user=owner, project=project, template=shipped("weightless-segment"), prompt="he runs", init_image=FIRST_FRAME
    )
    assert job.prompt == "he runs"


# --- the memory's style LoRA -------------------------------------------------------------------


def lora_nodes(job) -> list[tuple[str, float]]:
    return sorted(
        (node["inputs"]["lora_name"], node["inputs"]["strength_model"])
        for node in job.graph.values()
        if node["class_type"] == "LoraLoader"
    )


def still_of(project, owner, scene):
    [job] = jobs_create(user=owner, project=project, template=shipped("txt2img-sd15"), scene=scene, prompt="he runs")
    return job


def test_a_scene_whose_memory_names_a_style_lora_loads_it_at_that_strength(project, owner, scenes, enqueued):
    one, two = scenes
    style = project.style
    style.checkpoint, style.loras = "anime_v1.safetensors", [{"name": "ink.safetensors", "strength": 0.7}]
    style.save()
    memory_update(scene=one, user=None, patch={"style": {"style_lora": "noir.safetensors", "style_lora_strength": 0.6}})

    job = still_of(project, owner, two)  # carried from scene one
    assert [(item["name"], item["strength"]) for item in job.params["loras"]] == [
        ("ink.safetensors", 0.7),
        ("noir.safetensors", 0.6),
    ]
    assert lora_nodes(job) == [("ink.safetensors", 0.7), ("noir.safetensors", 0.6)]

    style.loras = [{"name": "noir.safetensors", "strength": 1.0}, {"name": "ink.safetensors", "strength": 0.7}]
    style.save()
    job = still_of(project, owner, two)  # the style has it too: once, at the memory's strength
    assert [(item["name"], item["strength"]) for item in job.params["loras"]] == [
        ("noir.safetensors", 0.6),
        ("ink.safetensors", 0.7),
    ]
    assert lora_nodes(job) == [("ink.safetensors", 0.7), ("noir.safetensors", 0.6)]

    memory_update(scene=two, user=None, patch={"style": {"style_lora": ""}})  # this scene drops it
    style.loras = []
    style.save()
    assert lora_nodes(still_of(project, owner, two)) == []
    [plain] = jobs_create(user=owner, project=project, template=shipped("txt2img-sd15"), prompt="he runs")
    assert plain.params["loras"] == []  # no scene, no memory


def test_a_style_lora_the_backend_lacks_is_named_by_preflight(fake, project, owner, scenes, enqueued):
    one, two = scenes
    fake.configure(loras=["ink.safetensors"])
    backend_for(fake)
    style = project.style
    style.checkpoint = "anime_v1.safetensors"
    style.save()
    memory_update(scene=one, user=None, patch={"style": {"style_lora": "styles/noir.safetensors"}})

    job = still_of(project, owner, two)
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_type == "preflight"
    assert "LoRA 'styles/noir.safetensors' is not on this backend" in job.error_message
    assert "ink.safetensors" in job.error_message  # what it has instead
    assert enqueued.ids == []


def test_a_bad_style_lora_name_left_in_a_memory_is_refused_before_anything_is_queued(project, owner, scenes):
    one, two = scenes
    Scene.objects.filter(pk=one.pk).update(memory={"style": {"style_lora": "../../secrets.safetensors"}})
    refused = r"bad style LoRA '\.\./\.\./secrets\.safetensors': it must be a name as ComfyUI"
    with pytest.raises(JobError, match=refused):
        still_of(project, owner, two)
    assert not Job.objects.exists()
