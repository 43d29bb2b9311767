"""A job of a scene carries the scene's continuity memory in its resolved prompt (and so in its graph)."""

from __future__ import annotations

import pytest

from characters.models import Character
from generation.services.inputs import ImageSource
from generation.services.submit import jobs_create
from generation.workflow import TRANSFORMS
from projects.memory import memory_update
from projects.models import Episode, Scene
from tests.generation.engine_helpers import shipped

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
