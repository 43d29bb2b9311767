"""Resolving a job's prompt and parameters: style, character, scene, request, in that order."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from generation.services.resolve import ResolveError, join_prompt, resolve_job_parameters
from generation.workflow import apply, load_template_file
from projects.services import episode_create, scene_create, style_update
from tests.factories import CharacterFactory, VariationFactory, VersionFactory, make_project

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture
def owner(db):
    # A plain row: the shared personas hash real passwords, which costs seconds per test.
    return get_user_model().objects.create(username="producer")


@pytest.fixture
def project(owner):
    return make_project(owner, name="Skyline Academy")


@pytest.fixture
def styled(project):
    style_update(
        project=project,
        checkpoint="anime/counterfeit-v3.safetensors",
        sampler="dpmpp_2m",
        scheduler="karras",
        width=640,
        height=896,
        style_prompt="anime style, cel shading",
        negative_prompt="lowres, watermark",
        loras=[{"name": "flat-colour.safetensors", "strength": 0.6}],
        clip_skip=2,
        fps=10,
        draft_steps=12,
        draft_cfg=5.5,
        draft_denoise=0.7,
        production_steps=30,
        production_cfg=7.5,
        production_denoise=1.0,
    )
    project.refresh_from_db()
    return project


@pytest.fixture
def kai(styled):
    return CharacterFactory(
        project=styled,
        trigger_word="kaiN",
        design_prompt="1boy, silver hair, amber eyes",
        negative_prompt="extra arms",
        learned_negatives={"blurry": 0.4, "wrong eye colour": 2.5, "hat": 1.0, "bad": "x", "stale": 0},
    )


@pytest.fixture
def scene(styled):
    episode = episode_create(project=styled, title="Pilot")
    return scene_create(
        episode=episode, description="rooftop at dusk", mood="wistful", camera="low angle", lighting="rim light"
    )


def test_join_prompt_drops_empty_parts_and_doubled_commas():
    assert join_prompt(" a ,, b  ,c, ", "", None, ",d,") == "a, b, c, d"
    assert join_prompt("red  hair\n, (blue eyes, smile:1.2)", "Red hair") == "red hair, (blue eyes, smile:1.2)"


@pytest.mark.django_db
def test_prompt_is_composed_in_order(kai, scene):
    version = VersionFactory(character=kai, prompt_delta="age 17, taller", negative_delta="childish")
    variation = VariationFactory(character=kai, prompt_delta="winter coat, scarf", negative_delta="summer clothes")
    resolved = resolve_job_parameters(
        project=kai.project,
        character=kai,
        version=version,
        variation=variation,
        scene=scene,
        mode="draft",
        prompt="looking at the city, 1boy",
        negative="text",
    )
    assert resolved.prompt == (
        "kaiN, 1boy, silver hair, amber eyes, age 17, taller, winter coat, scarf, rooftop at dusk, wistful, "
        "low angle, rim light, looking at the city, anime style, cel shading"
    )
    assert resolved.negative == (
        "lowres, watermark, extra arms, wrong eye colour, hat, blurry, childish, summer clothes, text"
    )


@pytest.mark.django_db
def test_attributes_follow_the_design_prompt_by_priority(kai, scene):
    from characters.services import character_update, variation_create

    character_update(
        character=kai,
        attributes=[
            {"type": "eyes", "value": "amber", "priority": 20},
            {"type": "hair", "value": "silver", "prompt_tokens": "(silver hair:1.2), ahoge", "priority": 90},
            {"type": "outfit", "value": "navy school uniform, red tie", "priority": 50},
            {"type": "accessory", "value": "round glasses", "priority": 50},
        ],
    )
    version = VersionFactory(character=kai, prompt_delta="age 17")
    resolved = resolve_job_parameters(project=kai.project, character=kai, version=version, scene=scene, mode="draft")
    # Highest priority first; a tie by type; tokens when given, else the value; "amber eyes"
    # is the design's tag, "amber" the attribute's (a different tag, kept).
    assert resolved.prompt == (
        "kaiN, 1boy, silver hair, amber eyes, (silver hair:1.2), ahoge, round glasses, navy school uniform, "
        "red tie, amber, age 17, rooftop at dusk, wistful, low angle, rim light, anime style, cel shading"
    )

    coat = variation_create(character=kai, kind="outfit", name="Coat", prompt_delta="duffel coat")
    swapped = resolve_job_parameters(project=kai.project, character=kai, variation=coat, mode="draft")
    assert swapped.prompt == (
        "kaiN, 1boy, silver hair, amber eyes, (silver hair:1.2), ahoge, round glasses, amber, duffel coat, "
        "anime style, cel shading"
    )


@pytest.mark.django_db
def test_learned_negatives_are_capped_heaviest_first(kai):
    resolved = resolve_job_parameters(project=kai.project, character=kai, mode="draft", learned_negatives_limit=2)
    assert resolved.negative == "lowres, watermark, extra arms, wrong eye colour, hat"


@pytest.mark.django_db
def test_no_character_means_style_and_request_only(styled):
    resolved = resolve_job_parameters(project=styled, mode="production", prompt="a city skyline")
    assert resolved.prompt == "a city skyline, anime style, cel shading"
    assert resolved.negative == "lowres, watermark"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("mode", "expected"),
    [("draft", (12, 5.5, 0.7)), ("production", (30, 7.5, 1.0))],
)
def test_mode_picks_the_style_preset(styled, mode, expected):
    parameters = resolve_job_parameters(project=styled, mode=mode).parameters
    assert (parameters["steps"], parameters["cfg"], parameters["denoise"]) == expected


@pytest.mark.django_db
def test_parameters_come_from_the_style(styled):
    resolved = resolve_job_parameters(project=styled, mode="draft")
    assert resolved.parameters == {
        "checkpoint": "anime/counterfeit-v3.safetensors",
        "vae": None,
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 12,
        "cfg": 5.5,
        "denoise": 0.7,
        "width": 640,
        "height": 896,
        "clip_skip": 2,
        "loras": [{"name": "flat-colour.safetensors", "strength": 0.6, "strength_clip": 0.6}],
        "fps": 10,
        "seed": None,
    }
    assert resolved.overrides_applied == {}


@pytest.mark.django_db
def test_overrides_win_and_are_recorded_exactly(styled):
    resolved = resolve_job_parameters(
        project=styled,
        mode="production",
        overrides={"steps": 40, "sampler": "euler", "width": 1024, "seed": 77, "frames": 16, "cfg": 7.5},
    )
    assert resolved.parameters["steps"] == 40
    assert resolved.parameters["sampler"] == "euler"
    assert resolved.parameters["width"] == 1024
    assert resolved.parameters["height"] == 896  # not overridden: the style's
    assert resolved.parameters["seed"] == 77
    assert resolved.parameters["frames"] == 16
    # Recorded even when equal to the style (7.5): the request set it, so it no longer follows the style.
    assert resolved.overrides_applied == {
        "steps": 40,
        "sampler": "euler",
        "width": 1024,
        "seed": 77,
        "frames": 16,
        "cfg": 7.5,
    }


@pytest.mark.django_db
def test_unknown_override_keys_are_named(styled):
    with pytest.raises(ResolveError) as exc:
        resolve_job_parameters(project=styled, mode="draft", overrides={"stepz": 3, "colour": "red", "steps": 3})
    assert "unknown override(s): colour, stepz" in str(exc.value)


@pytest.mark.django_db
def test_prompt_in_overrides_points_to_the_right_argument(styled):
    with pytest.raises(ResolveError, match="the request's text goes in prompt="):
        resolve_job_parameters(project=styled, mode="draft", overrides={"prompt": "x"})


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"steps": 0}, "steps must be at least 1"),
        ({"steps": 500}, "steps must be between 1 and 200"),
        ({"steps": "many"}, "steps must be a number"),
        ({"width": 1004}, "width must be a multiple of 8"),
        ({"denoise": 1.2}, "denoise must be between 0"),
        ({"cfg": 31}, "cfg must be between 0 and 30"),
        ({"sampler": " "}, "sampler cannot be empty"),
        ({"seed": -5}, "seed must be between 0"),
        ({"loras": [{"name": "x", "strength": 9}]}, "x strength must be between -5 and 5"),
        ({"loras": "x.safetensors"}, "loras must be a list"),
        ({"fps": None}, "override 'fps' has no value"),
    ],
)
def test_invalid_override_values_are_refused(styled, overrides, fragment):
    with pytest.raises(ResolveError) as exc:
        resolve_job_parameters(project=styled, mode="draft", overrides=overrides)
    assert fragment in str(exc.value)


@pytest.mark.django_db
def test_loras_are_the_style_ones_plus_the_characters(styled):
    extra = [{"name": "kai-v3.safetensors", "strength": 0.9}]
    parameters = resolve_job_parameters(project=styled, mode="draft", extra_loras=extra).parameters
    assert [(lo["name"], lo["strength"]) for lo in parameters["loras"]] == [
        ("flat-colour.safetensors", 0.6),
        ("kai-v3.safetensors", 0.9),
    ]
    overridden = resolve_job_parameters(
        project=styled,
        mode="draft",
        extra_loras=extra,
        overrides={"loras": [{"name": "kai-v3.safetensors", "strength": 0.2}, {"name": "rain.safetensors"}]},
    ).parameters
    # The override replaces the style's list; the character's LoRA is still added, its strength winning.
    assert [(lo["name"], lo["strength"]) for lo in overridden["loras"]] == [
        ("kai-v3.safetensors", 0.9),
        ("rain.safetensors", 1.0),
    ]


@pytest.mark.django_db
def test_an_empty_vae_override_means_the_checkpoints_own(styled):
    style_update(project=styled, vae="kl-f8-anime2.safetensors")
    styled.refresh_from_db()
    assert resolve_job_parameters(project=styled, mode="draft").parameters["vae"] == "kl-f8-anime2.safetensors"
    resolved = resolve_job_parameters(project=styled, mode="draft", overrides={"vae": ""})
    assert resolved.parameters["vae"] is None
    assert resolved.overrides_applied == {"vae": ""}


@pytest.mark.django_db
def test_parts_must_belong_together(kai, owner):
    other_project = make_project(owner, name="Other show")
    stranger = CharacterFactory(project=other_project)
    with pytest.raises(ResolveError, match="is not in project"):
        resolve_job_parameters(project=kai.project, character=stranger, mode="draft")
    other_version = VersionFactory(character=CharacterFactory(project=kai.project))
    with pytest.raises(ResolveError, match="is not one of"):
        resolve_job_parameters(project=kai.project, character=kai, version=other_version, mode="draft")
    episode = episode_create(project=other_project, title="Elsewhere")
    with pytest.raises(ResolveError, match=r"scene .* is not in project"):
        resolve_job_parameters(project=kai.project, scene=scene_create(episode=episode), mode="draft")
    with pytest.raises(ResolveError, match="mode must be one of draft, production"):
        resolve_job_parameters(project=kai.project, mode="final")


@pytest.mark.django_db
def test_a_version_alone_brings_its_character(kai):
    version = VersionFactory(character=kai, prompt_delta="battle-worn")
    resolved = resolve_job_parameters(project=kai.project, version=version, mode="draft")
    assert resolved.prompt.startswith("kaiN, 1boy, silver hair, amber eyes, battle-worn")


@pytest.mark.django_db
def test_resolved_parameters_drive_a_shipped_template(kai):
    resolved = resolve_job_parameters(
        project=kai.project,
        character=kai,
        mode="draft",
        prompt="smiling",
        extra_loras=[{"name": "kai-v3.safetensors", "strength": 0.9}],
    )
    template = load_template_file(WORKFLOWS / "txt2img-sd15.json")
    result = apply(template.graph, template.bindings, resolved.as_workflow_params(), rng=random.Random(5))
    graph = result.graph
    assert graph["6"]["inputs"]["text"] == resolved.prompt
    assert graph["7"]["inputs"]["text"] == resolved.negative
    assert graph["3"]["inputs"]["steps"] == 12
    assert graph["4"]["inputs"]["ckpt_name"] == "anime/counterfeit-v3.safetensors"
    assert [graph[n]["inputs"]["lora_name"] for n in result.inserted] == [
        "flat-colour.safetensors",
        "kai-v3.safetensors",
    ]
    assert result.ignored == ["fps"]
    assert json.dumps(graph)  # JSON-safe, ready to post
