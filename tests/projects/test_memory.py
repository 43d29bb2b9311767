"""Continuity memory: validation naming the path, carrying from earlier scenes, updates with a change log,
and the prompt text a scene's jobs carry."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from characters.models import Character
from projects.memory import (
    memory_changes,
    memory_effective,
    memory_prompt,
    memory_style_lora,
    memory_update,
    memory_validate,
)
from projects.models import Episode, Scene, SceneMemoryChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def episode(project):
    return Episode.objects.create(project=project, number=1, title="Pilot")


@pytest.fixture
def scenes(episode):
    return [Scene.objects.create(episode=episode, number=n, title=f"Scene {n}") for n in (1, 2, 3)]


@pytest.fixture
def kai(project, scenes):
    kai = Character.objects.create(project=project, name="Kai", slug="kai", design_prompt="a boy")
    kai.scenes.set(scenes)
    return kai


def _messages(exc: pytest.ExceptionInfo[ValidationError]) -> list[str]:
    return exc.value.message_dict["memory"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"weather": {}}, "weather is not a memory section"),
        ({"story": {"mood": "dark"}}, "story.mood is not a memory entry"),
        ({"story": {"tension": 11}}, "story.tension must be a number from 0 to 10, not 11"),
        ({"story": {"tension": -1}}, "story.tension must be a number from 0 to 10"),
        ({"story": {"tension": "high"}}, "story.tension must be a number from 0 to 10"),
        ({"story": {"tension": True}}, "story.tension must be a number from 0 to 10"),
        ({"characters": {"7": {"outfit": 3}}}, "characters.7.outfit must be text, not int"),
        ({"characters": {"kai": {"outfit": "coat"}}}, "characters.kai is not a character id"),
        ({"characters": {"7": {"wings": "yes"}}}, "characters.7.wings is not a memory entry"),
        ({"style": {"style_keywords": "rain"}}, "style.style_keywords must be a list of non-empty texts"),
        ({"style": {"style_lora_strength": 9}}, "style.style_lora_strength must be a number from -5 to 5"),
        ({"style": {"style_lora": "../loras/noir.safetensors"}}, "style.style_lora must be a name as ComfyUI lists"),
        ({"style": {"style_lora": "/srv/noir.safetensors"}}, "style.style_lora must be a name as ComfyUI lists"),
        ({"style": {"style_lora": "noir\x00.safetensors"}}, "style.style_lora must not contain control characters"),
        ({"style": {"style_lora": 5}}, "style.style_lora must be text, not int"),
        ({"style": "neon"}, "style must be an object"),
        ([], "memory must be an object"),
    ],
)
def test_validate_names_the_path(data, expected):
    with pytest.raises(ValidationError) as exc:
        memory_validate(data)
    assert any(expected in m for m in _messages(exc)), _messages(exc)


def test_validate_accepts_every_documented_entry():
    memory = {
        "characters": {
            "7": {
                "outfit": "red coat",
                "hair": "short",
                "accessories": "scarf",
                "expression": "smiling",
                "pose": "running",
                "emotional_state": "hopeful",
                "position": "left",
                "facing": "right",
            }
        },
        "story": {
            "plot_summary": "Kai runs.",
            "tension": 7,
            "pacing": "fast",
            "story_beat": "the chase",
            "music_mood": "tense",
            "transition_in": "cut",
            "transition_out": "fade",
        },
        "style": {
            "lighting": "neon",
            "colours": "teal and orange",
            "colour_temperature": "cool",
            "camera_angle": "low",
            "camera_movement": "dolly in",
            "depth_of_field": "shallow",
            "style_keywords": ["rain", "reflections"],
            "style_lora": "noir.safetensors",
            "style_lora_strength": 0.8,
        },
    }
    assert memory_validate(memory) == memory


def test_memory_is_carried_in_order_and_a_scene_overrides_it(scenes, kai):
    one, two, three = scenes
    memory_update(scene=one, user=None, patch={"story": {"tension": 3, "pacing": "slow"}})
    memory_update(scene=one, user=None, patch={"characters": {str(kai.pk): {"outfit": "red coat"}}})
    memory_update(scene=two, user=None, patch={"story": {"tension": 8}})
    three.refresh_from_db()
    effective = memory_effective(three)
    assert effective["story"] == {"tension": 8, "pacing": "slow"}
    assert effective["characters"] == {str(kai.pk): {"outfit": "red coat"}}
    assert memory_effective(one)["story"]["tension"] == 3  # a later scene does not reach back
    assert three.memory == {}  # nothing was written on the scene that only carries


def test_update_records_each_changed_path_and_null_deletes(scenes, kai, owner):
    _one, two, _three = scenes
    key = str(kai.pk)
    memory_update(scene=two, user=owner, patch={"story": {"tension": 4}, "characters": {key: {"hair": "long"}}})
    scene = memory_update(scene=two, user=owner, patch={"story": {"tension": 6}, "characters": {key: None}})
    assert scene.memory == {"story": {"tension": 6}}
    two.refresh_from_db()
    assert two.memory == {"story": {"tension": 6}}
    latest, first = memory_changes(two)
    assert latest.user == owner
    assert latest.changes == [
        {"path": f"characters.{key}.hair", "old": "long", "new": None},
        {"path": "story.tension", "old": 4, "new": 6},
    ]
    assert first.changes == [
        {"path": f"characters.{key}.hair", "old": None, "new": "long"},
        {"path": "story.tension", "old": None, "new": 4},
    ]


def test_an_update_that_changes_nothing_writes_nothing(scenes, owner):
    scene = scenes[0]
    memory_update(scene=scene, user=owner, patch={"style": {"lighting": "dusk"}})
    memory_update(scene=scene, user=owner, patch={"style": {"lighting": "dusk", "colours": None}})
    memory_update(scene=scene, user=owner, patch={})
    assert SceneMemoryChange.objects.filter(scene=scene).count() == 1


def test_a_bad_patch_changes_nothing(scenes, owner, project):
    scene = scenes[0]
    memory_update(scene=scene, user=owner, patch={"story": {"tension": 2}})
    for patch in ({"story": {"tension": 12}}, {"characters": {"999999": {"outfit": "coat"}}}, {"plot": "x"}):
        with pytest.raises(ValidationError):
            memory_update(scene=scene, user=owner, patch=patch)
    scene.refresh_from_db()
    assert scene.memory == {"story": {"tension": 2}}
    assert SceneMemoryChange.objects.filter(scene=scene).count() == 1


def test_a_character_of_another_project_is_refused(scenes, owner, outsider):
    from tests.factories import make_project

    other = Character.objects.create(project=make_project(outsider, "Other"), name="Zed", slug="zed", design_prompt="x")
    with pytest.raises(ValidationError) as exc:
        memory_update(scene=scenes[0], user=owner, patch={"characters": {str(other.pk): {"outfit": "coat"}}})
    assert _messages(exc) == [f"characters.{other.pk} is not a character of this project"]


def test_prompt_carries_the_effective_memory_of_the_scenes_characters(scenes, kai, project):
    one, two, _three = scenes
    mira = Character.objects.create(project=project, name="Mira", slug="mira", design_prompt="a girl")
    memory_update(
        scene=one,
        user=None,
        patch={
            "characters": {str(kai.pk): {"outfit": "red coat, torn", "facing": "left"}, str(mira.pk): {"hair": "bob"}},
            "story": {"tension": 7, "story_beat": "the chase"},
            "style": {"lighting": "neon", "style_keywords": ["rain"], "style_lora": "noir", "style_lora_strength": 0.8},
        },
    )
    memory_update(scene=two, user=None, patch={"characters": {str(kai.pk): {"facing": "right"}}})
    text = memory_prompt(two)
    assert text == (
        "Kai outfit: red coat; torn, Kai facing: right, tension 7/10, story beat: the chase, lighting: neon, rain"
    )
    assert "noir" not in text  # the style LoRA is loaded as a LoRA, not written into the prompt
    assert "Mira" not in text  # not in the scene
    assert "Mira hair: bob" in memory_prompt(two, characters=[mira])
    assert memory_prompt(Scene.objects.create(episode=one.episode, number=9)) != ""  # carried into a later scene
    assert (
        memory_prompt(
            Scene.objects.create(episode=Episode.objects.create(project=project, number=2, title="B"), number=1)
        )
        == ""
    )


def test_the_style_lora_is_carried_with_its_strength_and_a_blank_one_clears_it(scenes, owner):
    one, two, three = scenes
    assert memory_style_lora(one) is None
    memory_update(scene=one, user=owner, patch={"style": {"style_lora": " styles/noir.safetensors ", "lighting": "x"}})
    assert memory_style_lora(two) == {"name": "styles/noir.safetensors", "strength": 1.0}  # carried; 1 when unset
    memory_update(scene=two, user=owner, patch={"style": {"style_lora_strength": 0.6}})
    assert memory_style_lora(three) == {"name": "styles/noir.safetensors", "strength": 0.6}
    memory_update(scene=three, user=owner, patch={"style": {"style_lora": ""}})
    assert memory_style_lora(three) is None and memory_style_lora(two) is not None
    with pytest.raises(ValidationError):  # a bad name is refused and nothing changes
        memory_update(scene=two, user=owner, patch={"style": {"style_lora": "../../etc/passwd"}})
    assert memory_style_lora(two) == {"name": "styles/noir.safetensors", "strength": 0.6}
