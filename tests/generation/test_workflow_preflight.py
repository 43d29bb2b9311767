"""Preflight against a real server's /object_info agrees with what that server refused or accepted."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from typing import Any

import pytest

from generation.workflow import GraphFormatError, combo_requirements, preflight, validate_graph
from tests.fakes.comfyui_recordings import RECORDINGS_DIR

RECORDINGS = RECORDINGS_DIR


@cache
def _recording(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


@pytest.fixture
def object_info() -> dict:
    return copy.deepcopy(_recording("object_info_full.json"))


def _with_checkpoints(object_info: dict, names: list[str]) -> dict:
    object_info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] = list(names)
    return object_info


def txt2img(ckpt: str = "a.safetensors", sampler: str = "euler", steps: int = 20) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 1,
                "steps": steps,
                "cfg": 8.0,
                "sampler_name": sampler,
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
    }


def test_clean_graph_has_no_problems(object_info):
    _with_checkpoints(object_info, ["a.safetensors"])
    assert preflight(txt2img(), object_info) == []


def test_unknown_node_class(object_info):
    graph = txt2img()
    graph["10"] = {"class_type": "NoSuchNodeXYZ", "inputs": {"image": ["8", 0]}}
    _with_checkpoints(object_info, ["a.safetensors"])
    (problem,) = preflight(graph, object_info)
    assert (problem.node_id, problem.class_type, problem.code) == ("10", "NoSuchNodeXYZ", "unknown_class")
    assert "this backend has no node class 'NoSuchNodeXYZ'" in problem.message


def test_checkpoint_not_in_the_list_names_what_the_backend_has(object_info):
    _with_checkpoints(object_info, ["a.safetensors", "b.safetensors"])
    (problem,) = preflight(txt2img("anime/x.safetensors"), object_info)
    assert problem.message == (
        "node 4 (CheckpointLoaderSimple): checkpoint 'anime/x.safetensors' is not on this backend; "
        "it has: a.safetensors, b.safetensors"
    )
    assert (problem.node_id, problem.input, problem.value, problem.code) == (
        "4",
        "ckpt_name",
        "anime/x.safetensors",
        "not_in_list",
    )


def test_a_long_list_is_capped(object_info):
    _with_checkpoints(object_info, [f"m{i:02}.safetensors" for i in range(25)])
    (problem,) = preflight(txt2img("x.safetensors"), object_info)
    assert "m09.safetensors, … (15 more)" in problem.message
    assert "m10.safetensors" not in problem.message


def test_an_empty_model_folder_is_said_plainly(object_info):
    (problem,) = preflight(txt2img("x.safetensors"), object_info)  # the recording has no checkpoints
    assert problem.message.endswith("checkpoint 'x.safetensors' is not on this backend; it has no checkpoint files")


def test_a_windows_path_separator_gets_a_suggestion(object_info):
    _with_checkpoints(object_info, ["anime\\x.safetensors", "b.safetensors"])
    (problem,) = preflight(txt2img("anime/x.safetensors"), object_info)
    assert "(did you mean 'anime\\x.safetensors'?)" in problem.message


def test_sampler_not_in_the_list(object_info):
    _with_checkpoints(object_info, ["a.safetensors"])
    (problem,) = preflight(txt2img(sampler="euler_magic"), object_info)
    assert problem.input == "sampler_name"
    assert problem.message.startswith(
        "node 3 (KSampler): sampler 'euler_magic' is not offered by this backend; it has: euler, euler_cfg_pp"
    )


def test_value_out_of_range(object_info):
    _with_checkpoints(object_info, ["a.safetensors"])
    (problem,) = preflight(txt2img(steps=0), object_info)
    assert (problem.code, problem.input) == ("below_min", "steps")
    assert problem.message == "node 3 (KSampler): input 'steps' is 0, below this backend's minimum of 1"
    graph = txt2img()
    graph["5"]["inputs"]["width"] = 20000
    (problem,) = preflight(graph, object_info)
    assert (problem.code, problem.input) == ("above_max", "width")
    assert "above this backend's maximum of 16384" in problem.message


def test_newer_combo_shape_is_checked(object_info):
    assert object_info["ImageBlend"]["input"]["required"]["blend_mode"][0] == "COMBO"
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {
            "class_type": "ImageBlend",
            "inputs": {"image1": ["1", 0], "image2": ["1", 0], "blend_factor": 0.5, "blend_mode": "bogus"},
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    (problem,) = preflight(graph, object_info)
    assert problem.code == "not_in_list"
    assert "'blend_mode' value 'bogus' is not offered by this backend; it has: normal, multiply" in problem.message
    graph["2"]["inputs"]["blend_mode"] = "screen"
    assert preflight(graph, object_info) == []


def test_a_combo_without_listed_options_is_not_checked(object_info):
    graph = {
        "1": {"class_type": "LoadImageOutput", "inputs": {"image": "ComfyUI_00001_.png [output]"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    assert preflight(graph, object_info) == []


def test_uploaded_files_are_checked_only_when_asked(object_info):
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "init.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    assert preflight(graph, object_info) == []
    (problem,) = preflight(graph, object_info, check_uploads=True)
    assert "image 'init.png' is not on this backend" in problem.message


def test_missing_required_input_and_bad_links(object_info):
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 3], "filename_prefix": "x"}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "y"}},
    }
    problems = {(p.node_id, p.code): p.message for p in preflight(graph, object_info)}
    assert problems == {
        ("1", "missing_input"): "node 1 (EmptyImage): required input 'color' is missing",
        ("2", "bad_link"): "node 2 (SaveImage): input 'images' reads output 3 of node 1 (EmptyImage), "
        "which has 1 output(s)",
        ("4", "type_mismatch"): "node 4 (SaveImage): input 'images' takes IMAGE but node 3 "
        "(EmptyLatentImage) gives LATENT",
    }


def test_a_graph_without_output_node(object_info):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    (problem,) = preflight(graph, object_info)
    assert problem.code == "no_outputs"


def test_combo_requirements_lists_literal_combo_values(object_info):
    found = combo_requirements(txt2img("anime/x.safetensors"), object_info)
    assert found == [
        ("3", "KSampler", "sampler_name", "euler"),
        ("3", "KSampler", "scheduler", "normal"),
        ("4", "CheckpointLoaderSimple", "ckpt_name", "anime/x.safetensors"),
    ]


# What the real server said about each recorded prompt, replayed through validation + preflight.


def _flagged_nodes(graph: Any, object_info: dict) -> set[str]:
    try:
        validate_graph(graph)
    except GraphFormatError as exc:
        return {m.group(1) for p in exc.problems if (m := re.match(r"node (\S+):", p))} or {"<graph>"}
    problems = preflight(graph, object_info, check_uploads=True)
    return {p.node_id or "<graph>" for p in problems}


_INVALID = {k: v for k, v in _recording("prompt_invalid.json").items() if k != "notes"} if RECORDINGS.is_dir() else {}


@pytest.mark.parametrize(
    "case", sorted(k for k, v in _INVALID.items() if v["status"] == 400 and "prompt" in v["request"]["body"])
)
def test_every_recorded_refusal_is_caught_on_the_same_node(case, object_info):
    record = _INVALID[case]
    graph = record["request"]["body"]["prompt"]
    body = record["body"]
    expected = set(body["node_errors"])
    if not expected:
        ids = re.findall(r"#(\w+)", body["error"]["details"])
        expected = set(ids) or {"<graph>"}
    # ComfyUI reports a bad link on the node holding it; so do we.
    assert expected <= _flagged_nodes(graph, object_info), body["error"]


def _accepted_prompts() -> list[tuple[str, dict]]:
    if not RECORDINGS.is_dir():
        return []
    accepted = [
        (name, record["request"]["body"]["prompt"])
        for name, record in _recording("prompt_ok.json").items()
        if isinstance(record, dict)
        and record.get("status") == 200
        and "request" in record
        and not record["body"].get("node_errors")
    ]
    accepted += [
        (scenario["scenario"], scenario["post_prompt"]["request"]["prompt"])
        for scenario in _recording("ws_scenarios_index.json")
        if "post_prompt" in scenario
    ]
    return accepted


@pytest.mark.parametrize(("name", "graph"), _accepted_prompts(), ids=[n for n, _ in _accepted_prompts()])
def test_every_recorded_accepted_prompt_passes(name, graph, object_info):
    validate_graph(graph)
    assert preflight(graph, object_info) == []
