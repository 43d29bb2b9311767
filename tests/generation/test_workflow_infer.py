"""Proposed bindings for graphs users export from ComfyUI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from generation.workflow import infer_bindings, load_template_file, normalize_bindings, resolve_bindings

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def _pairs(bindings: dict) -> set[tuple[str, str, str | None, str | None]]:
    return {
        (param, t.node, t.input, t.transform)
        for param, targets in normalize_bindings(bindings).items()
        for t in targets
    }


@pytest.mark.parametrize(
    "slug",
    [
        "txt2img-sd15",
        "txt2img-sdxl",
        "img2img",
        "ipadapter-character",
        "animatediff-loop",
        "svd-img2vid",
        "svd-segment",
    ],
)
def test_inference_finds_what_a_hand_bound_model_template_binds(slug):
    template = load_template_file(WORKFLOWS / f"{slug}.json")
    inferred = infer_bindings(template.graph)
    resolve_bindings(template.graph, inferred)  # proposals always resolve
    assert _pairs(inferred) == _pairs(template.bindings)


def _exported_graph() -> dict:
    """A typical user export: hires fix with two samplers and prompts combined before sampling."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "anything.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "1girl", "clip": ["4", 1]}},
        "16": {"class_type": "CLIPTextEncode", "inputs": {"text": "masterpiece", "clip": ["4", 1]}},
        "17": {
            "class_type": "ConditioningCombine",
            "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["16", 0]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "lowres", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 768, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": 20,
                "cfg": 7,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["17", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "10": {
            "class_type": "LatentUpscaleBy",
            "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "scale_by": 1.5},
        },
        "11": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "add_noise": "enable",
                "noise_seed": 1,
                "steps": 10,
                "cfg": 7,
                "sampler_name": "euler",
                "scheduler": "normal",
                "start_at_step": 0,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
                "model": ["4", 0],
                "positive": ["17", 0],
                "negative": ["7", 0],
                "latent_image": ["10", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "ComfyUI"}},
    }


def test_hires_fix_binds_the_first_pass_and_seeds_both():
    bindings = infer_bindings(_exported_graph())
    nodes = {param: [(t["node"], t.get("input")) for t in targets] for param, targets in bindings.items()}
    assert nodes["seed"] == [("3", "seed"), ("11", "noise_seed")]
    assert nodes["steps"] == [("3", "steps")]
    assert nodes["denoise"] == [("3", "denoise")]
    assert nodes["prompt"] == [("6", "text")]  # nearest text encoder behind the combine node
    assert nodes["negative"] == [("7", "text")]
    assert nodes["width"] == [("5", "width")]
    assert nodes["checkpoint"] == [("4", "ckpt_name")]
    assert bindings["loras"] == [{"node": "4", "class": "CheckpointLoaderSimple"}]
    assert nodes["filename_prefix"] == [("9", "filename_prefix")]
    assert all(t["class"] for targets in bindings.values() for t in targets)


def test_reference_and_init_images_are_told_apart():
    graph = load_template_file(WORKFLOWS / "ipadapter-character.json").graph
    graph["30"] = {"class_type": "LoadImage", "inputs": {"image": "pose.png"}}
    graph["31"] = {"class_type": "PreviewImage", "inputs": {"images": ["30", 0]}}
    bindings = infer_bindings(graph)
    assert bindings["reference_image"] == [{"node": "12", "class": "LoadImage", "input": "image"}]
    assert bindings["init_image"] == [{"node": "30", "class": "LoadImage", "input": "image"}]


def test_nothing_is_guessed_when_a_choice_is_ambiguous():
    graph = _exported_graph()
    graph["40"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "refiner.safetensors"}}
    bindings = infer_bindings(graph)
    assert "checkpoint" not in bindings
    assert "loras" not in bindings


def test_an_image_only_graph_still_gets_seed_and_size():
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 8, "color": 0}},
        "2": {"class_type": "ImageAddNoise", "inputs": {"image": ["1", 0], "seed": 0, "strength": 0.3}},
        "3": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["2", 0], "filename_prefix": "x", "fps": 8.0}},
    }
    assert {"seed", "width", "height", "fps", "filename_prefix"} <= set(infer_bindings(graph))
    graph = json.loads((WORKFLOWS / "weightless-loop.json").read_text())["graph"]
    assert {"init_image", "fps", "filename_prefix"} <= set(infer_bindings(graph))


def test_a_node_titled_seed_is_bound_when_nothing_else_holds_one():
    graph = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 7}, "_meta": {"title": "Seed"}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
    }
    assert infer_bindings(graph)["seed"] == [{"node": "1", "class": "PrimitiveInt", "input": "value"}]
    graph["1"]["_meta"]["title"] = "Colour"
    assert "seed" not in infer_bindings(graph)
