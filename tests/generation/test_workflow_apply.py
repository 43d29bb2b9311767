"""Applying parameters: a new graph every time, seeds recorded, LoRA chains wired correctly."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from generation.workflow import (
    MAX_DRAWN_SEED,
    ParameterError,
    apply,
    is_link,
    load_template_file,
    validate_graph,
)

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture
def sd15():
    return load_template_file(WORKFLOWS / "txt2img-sd15.json")


def _links_from(graph: dict, source: str) -> list[tuple[str, str, int]]:
    return sorted(
        (node_id, name, value[1])
        for node_id, node in graph.items()
        for name, value in node["inputs"].items()
        if is_link(value) and value[0] == source
    )


def test_apply_sets_every_bound_input(sd15):
    result = apply(
        sd15.graph,
        sd15.bindings,
        {
            "prompt": "kaiN, 1boy",
            "negative": "lowres",
            "seed": 42,
            "steps": 12,
            "cfg": 6.5,
            "sampler": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "width": 640,
            "height": 832,
            "checkpoint": "anime/x.safetensors",
            "clip_skip": 2,
            "filename_prefix": "tower/p1/j7",
        },
    )
    graph = result.graph
    assert graph["6"]["inputs"]["text"] == "kaiN, 1boy"
    assert graph["7"]["inputs"]["text"] == "lowres"
    assert graph["3"]["inputs"] | {"model": None} == {
        "model": None,
        "seed": 42,
        "steps": 12,
        "cfg": 6.5,
        "sampler_name": "dpmpp_2m",
        "scheduler": "karras",
        "denoise": 1.0,
        "positive": ["6", 0],
        "negative": ["7", 0],
        "latent_image": ["5", 0],
    }
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (640, 832)
    assert graph["4"]["inputs"]["ckpt_name"] == "anime/x.safetensors"
    assert graph["10"]["inputs"]["stop_at_clip_layer"] == -2  # clip skip 2, negated
    assert graph["9"]["inputs"]["filename_prefix"] == "tower/p1/j7"
    assert result.seed == 42
    assert result.ignored == []


def test_apply_never_mutates_the_template(sd15):
    before = copy.deepcopy(sd15.graph)
    bindings_before = copy.deepcopy(sd15.bindings)
    result = apply(
        sd15.graph,
        sd15.bindings,
        {"prompt": "x", "seed": 1, "loras": [{"name": "a.safetensors", "strength": 0.5}], "vae": "v.safetensors"},
    )
    assert sd15.graph == before
    assert sd15.bindings == bindings_before
    assert result.graph != before
    # No shared nested objects either: editing the result leaves the template alone.
    result.graph["3"]["inputs"]["steps"] = 999
    result.graph["3"]["inputs"]["model"][1] = 7
    assert sd15.graph == before


def test_an_unset_seed_is_drawn_and_returned(sd15):
    first = apply(sd15.graph, sd15.bindings, {"seed": None}, rng=random.Random(1))
    again = apply(sd15.graph, sd15.bindings, {}, rng=random.Random(1))
    other = apply(sd15.graph, sd15.bindings, {}, rng=random.Random(2))
    assert 0 <= first.seed <= MAX_DRAWN_SEED
    assert first.graph["3"]["inputs"]["seed"] == first.seed
    assert again.seed == first.seed  # reproducible with the same generator
    assert other.seed != first.seed


def test_drawn_seeds_vary_without_a_generator(sd15):
    seeds = {apply(sd15.graph, sd15.bindings, {}).seed for _ in range(5)}
    assert len(seeds) == 5
    assert all(0 <= s <= MAX_DRAWN_SEED for s in seeds)


def test_a_given_seed_is_kept(sd15):
    result = apply(sd15.graph, sd15.bindings, {"seed": 2**62})
    assert result.seed == 2**62
    assert result.graph["3"]["inputs"]["seed"] == 2**62


def test_a_template_without_seed_input_reports_the_seed_ignored():
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    result = apply(graph, {"width": {"node": "1", "input": "width"}}, {"seed": 5, "width": 16})
    assert result.seed is None
    assert result.ignored == ["seed"]
    assert result.applied == {"width": 16}


def test_none_keeps_the_template_value(sd15):
    result = apply(sd15.graph, sd15.bindings, {"steps": None, "checkpoint": None})
    assert result.graph["3"]["inputs"]["steps"] == sd15.graph["3"]["inputs"]["steps"]
    assert result.graph["4"]["inputs"]["ckpt_name"] == sd15.graph["4"]["inputs"]["ckpt_name"]


def test_no_loras_inserts_nothing(sd15):
    result = apply(sd15.graph, sd15.bindings, {"loras": [], "seed": 1})
    assert set(result.graph) == set(sd15.graph)
    assert result.inserted == []
    assert _links_from(result.graph, "4") == _links_from(sd15.graph, "4")


def test_one_lora_sits_between_the_checkpoint_and_its_readers(sd15):
    result = apply(sd15.graph, sd15.bindings, {"loras": [{"name": "kai.safetensors", "strength": 0.8}], "seed": 1})
    graph = result.graph
    (lora_id,) = result.inserted
    lora = graph[lora_id]
    assert lora["class_type"] == "LoraLoader"
    assert lora["inputs"] == {
        "model": ["4", 0],
        "clip": ["4", 1],
        "lora_name": "kai.safetensors",
        "strength_model": 0.8,
        "strength_clip": 0.8,
    }
    # The checkpoint's model and CLIP now reach the graph only through the LoRA; its VAE is untouched.
    assert _links_from(graph, "4") == [(lora_id, "clip", 1), (lora_id, "model", 0), ("8", "vae", 2)]
    assert graph["3"]["inputs"]["model"] == [lora_id, 0]
    assert graph["10"]["inputs"]["clip"] == [lora_id, 1]
    validate_graph(graph)


def test_three_loras_chain_in_order(sd15):
    loras = [
        {"name": "style.safetensors", "strength": 0.6},
        {"name": "kai.safetensors", "strength": 0.9, "strength_clip": 0.4},
        {"name": "pose.safetensors", "strength": -0.3},
    ]
    result = apply(sd15.graph, sd15.bindings, {"loras": loras, "seed": 1})
    graph = result.graph
    first, second, third = result.inserted
    assert [graph[n]["inputs"]["lora_name"] for n in result.inserted] == [
        "style.safetensors",
        "kai.safetensors",
        "pose.safetensors",
    ]
    assert graph[first]["inputs"]["model"] == ["4", 0] and graph[first]["inputs"]["clip"] == ["4", 1]
    assert graph[second]["inputs"]["model"] == [first, 0] and graph[second]["inputs"]["clip"] == [first, 1]
    assert graph[third]["inputs"]["model"] == [second, 0] and graph[third]["inputs"]["clip"] == [second, 1]
    assert (graph[second]["inputs"]["strength_model"], graph[second]["inputs"]["strength_clip"]) == (0.9, 0.4)
    assert graph[third]["inputs"]["strength_model"] == -0.3
    # Former readers of the checkpoint read the end of the chain; the middle LoRAs feed only the next one.
    assert graph["3"]["inputs"]["model"] == [third, 0]
    assert graph["10"]["inputs"]["clip"] == [third, 1]
    assert _links_from(graph, first) == [(second, "clip", 1), (second, "model", 0)]
    assert _links_from(graph, third) == [("10", "clip", 1), ("3", "model", 0)]
    assert len(graph) == len(sd15.graph) + 3
    validate_graph(graph)


def test_model_only_loras_when_the_loader_has_no_clip():
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "u.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 0}},
    }
    bindings = {"loras": {"node": "1", "clip_output": None}}
    result = apply(graph, bindings, {"loras": [{"name": "a", "strength": 1}, {"name": "b", "strength": 0.5}]})
    first, second = result.inserted
    assert result.graph[first]["class_type"] == "LoraLoaderModelOnly"
    assert result.graph[second]["inputs"] == {"model": [first, 0], "lora_name": "b", "strength_model": 0.5}
    assert result.graph["2"]["inputs"]["model"] == [second, 0]


def test_a_vae_name_inserts_a_loader_that_every_vae_reader_uses():
    template = load_template_file(WORKFLOWS / "img2img.json")
    result = apply(template.graph, template.bindings, {"vae": "kl-f8-anime2.safetensors", "seed": 1})
    (vae_id,) = result.inserted
    assert result.graph[vae_id] == {
        "class_type": "VAELoader",
        "inputs": {"vae_name": "kl-f8-anime2.safetensors"},
        "_meta": {"title": "VAE: kl-f8-anime2.safetensors"},
    }
    readers = [(n, name) for n, name, idx in _links_from(result.graph, vae_id)]
    assert readers == [("14", "vae"), ("8", "vae")]  # the encoder and the decoder
    assert ("8", "vae", 2) not in _links_from(result.graph, "4")


def test_an_empty_vae_keeps_the_checkpoints_own(sd15):
    result = apply(sd15.graph, sd15.bindings, {"vae": "", "seed": 1})
    assert result.inserted == []
    assert result.graph["8"]["inputs"]["vae"] == ["4", 2]


def test_weightless_seed_and_prompt_change_the_graph():
    template = load_template_file(WORKFLOWS / "weightless-image.json")
    base = apply(template.graph, template.bindings, {"prompt": "red hair", "seed": 1}).graph
    same = apply(template.graph, template.bindings, {"prompt": "red hair", "seed": 1}).graph
    new_seed = apply(template.graph, template.bindings, {"prompt": "red hair", "seed": 2}).graph
    new_prompt = apply(template.graph, template.bindings, {"prompt": "blue hair", "seed": 1}).graph
    assert json.dumps(base, sort_keys=True) == json.dumps(same, sort_keys=True)
    assert base != new_seed
    assert base["1"]["inputs"]["color"] != new_prompt["1"]["inputs"]["color"]
    assert 0 <= base["1"]["inputs"]["color"] <= 0xFFFFFF
    assert 0 <= base["3"]["inputs"]["blend_factor"] <= 1


def test_one_parameter_reaches_every_target():
    template = load_template_file(WORKFLOWS / "weightless-image.json")
    graph = apply(template.graph, template.bindings, {"width": 96, "height": 48, "seed": 3}).graph
    assert [graph[n]["inputs"]["width"] for n in ("1", "2")] == [96, 96]
    assert [graph[n]["inputs"]["height"] for n in ("1", "2")] == [48, 48]


def test_parameters_the_template_does_not_bind_are_reported(sd15):
    result = apply(sd15.graph, sd15.bindings, {"frames": 16, "fps": 8, "seed": 1})
    assert result.ignored == ["fps", "frames"]
    assert "frames" not in result.applied
    svd = load_template_file(WORKFLOWS / "svd-img2vid.json")
    assert apply(svd.graph, svd.bindings, {"loras": []}).ignored == []
    assert apply(svd.graph, svd.bindings, {"loras": [{"name": "a"}]}).ignored == ["loras"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"steps": "20"}, "steps must be a number"),
        ({"steps": 2.5}, "steps must be a whole number"),
        ({"steps": True}, "steps must be a number"),
        ({"denoise": 1.5}, "denoise must be between 0 and 1"),
        ({"seed": -1}, "seed must be between 0"),
        ({"seed": 2**64}, "seed must be between 0"),
        ({"prompt": 5}, "prompt must be text"),
        ({"loras": {"name": "a"}}, "loras must be a list"),
        ({"loras": [{"strength": 1}]}, "needs a non-empty 'name'"),
        ({"loras": [{"name": "a", "strength": "high"}]}, "strength must be a number"),
        ({"colour": "red"}, "unknown parameters: colour"),
    ],
)
def test_bad_parameters_are_refused(sd15, params, fragment):
    with pytest.raises(ParameterError) as exc:
        apply(sd15.graph, sd15.bindings, params)
    assert fragment in str(exc.value)
