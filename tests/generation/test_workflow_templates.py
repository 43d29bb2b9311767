"""Every shipped template in workflows/ is valid, binds what it claims, and passes preflight."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from generation.workflow import (
    KINDS,
    WEIGHTLESS_NODES,
    TemplateFormatError,
    apply,
    load_template_file,
    parse_template,
    preflight,
    required_nodes,
    resolve_bindings,
)
from tests.fakes.comfyui_recordings import RECORDINGS_DIR

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FILES = sorted(WORKFLOWS.glob("*.json"))
RECORDINGS = RECORDINGS_DIR
CUSTOM_PACKS = {
    "ipadapter-character": "ComfyUI_IPAdapter_plus",
    "animatediff-loop": "ComfyUI-AnimateDiff-Evolved",
    "character-sheet": "ComfyUI_IPAdapter_plus",
}

# What a job typically sends: enough to touch every kind of binding.
PARAMS = {
    "prompt": "kaiN, 1boy, silver hair",
    "negative": "lowres, bad hands",
    "seed": 123456789,
    "steps": 12,
    "cfg": 6.0,
    "sampler": "euler_ancestral",
    "scheduler": "normal",
    "denoise": 0.9,
    "width": 256,
    "height": 320,
    "clip_skip": 2,
    "frames": 8,
    "fps": 8,
    "init_image": "tower_init.png",
    "reference_image": "tower_ref.png",
    "filename_prefix": "tower/test",
}


@cache
def _object_info() -> dict[str, Any]:
    return json.loads((RECORDINGS / "object_info_full.json").read_text())


def _object_info_with(checkpoints: list[str], loras: list[str] = ()) -> dict[str, Any]:
    info = copy.deepcopy(_object_info())
    for loader in ("CheckpointLoaderSimple", "ImageOnlyCheckpointLoader"):
        info[loader]["input"]["required"]["ckpt_name"][0] = list(checkpoints)
    for loader in ("LoraLoader", "LoraLoaderModelOnly"):
        info[loader]["input"]["required"]["lora_name"][0] = list(loras)
    return info


def _templates():
    return [load_template_file(path) for path in FILES]


def test_there_are_shipped_templates_of_every_kind_and_a_weightless_one_for_each():
    templates = _templates()
    assert {t.kind for t in templates} == set(KINDS)
    assert {t.kind for t in templates if t.weightless} == set(KINDS)
    assert {
        "txt2img-sd15",
        "txt2img-sdxl",
        "img2img",
        "ipadapter-character",
        "animatediff-loop",
        "svd-img2vid",
        "svd-segment",
    } <= {t.slug for t in templates}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_template_file_loads_and_its_bindings_resolve(path):
    template = load_template_file(path)
    assert template.slug == path.stem
    assert template.description
    resolved = resolve_bindings(template.graph, template.bindings)
    assert "filename_prefix" in resolved  # Tower names every output
    result = apply(template.graph, template.bindings, PARAMS)
    assert result.seed == PARAMS["seed"] or "seed" not in resolved
    assert "seed" in resolved, "every template must vary with the seed, or ComfyUI serves it from cache"


def test_slugs_are_unique():
    slugs = [t.slug for t in _templates()]
    assert len(slugs) == len(set(slugs))


def test_weightless_node_list_matches_the_recording():
    recorded = json.loads((RECORDINGS / "weightless_nodes.json").read_text())
    sources = {s.split(" ")[0] for s in recorded["also_weightless_sources"]} - {"EmptyLatentImage"}
    assert set(recorded["passed"]) | sources == WEIGHTLESS_NODES


WEIGHTLESS = [p for p in FILES if json.loads(p.read_text())["weightless"]]
# FramePack loads no checkpoint but its own model, CLIPs and VAE: test_segment_templates checks its
# pre-flight against the pack's /object_info, with and without its files.
MODEL = [p for p in FILES if p not in WEIGHTLESS and p.stem != "framepack-segment"]


@pytest.mark.parametrize("path", WEIGHTLESS, ids=[p.stem for p in WEIGHTLESS])
def test_weightless_template_passes_preflight_on_a_server_with_no_models(path):
    template = load_template_file(path)
    assert set(required_nodes(template.graph)) <= WEIGHTLESS_NODES
    assert preflight(template.graph, _object_info()) == []
    applied = apply(template.graph, template.bindings, PARAMS).graph
    assert preflight(applied, _object_info()) == []


@pytest.mark.parametrize("path", WEIGHTLESS, ids=[p.stem for p in WEIGHTLESS])
def test_weightless_template_changes_with_seed_and_size(path):
    template = load_template_file(path)
    one = apply(template.graph, template.bindings, {**PARAMS, "seed": 1}).graph
    two = apply(template.graph, template.bindings, {**PARAMS, "seed": 2}).graph
    wide = apply(template.graph, template.bindings, {**PARAMS, "seed": 1, "width": 512}).graph
    assert one != two
    if template.kind != "character_sheet":  # a sheet is 1024×1024 whatever the panel size asked
        assert one != wide


@pytest.mark.parametrize("path", MODEL, ids=[p.stem for p in MODEL])
def test_model_template_passes_preflight_when_the_backend_has_its_files(path):
    template = load_template_file(path)
    checkpoint = "anime/tower-test.safetensors"
    info = _object_info_with([checkpoint], loras=["kai.safetensors"])
    params = {**PARAMS, "checkpoint": checkpoint}
    if "loras" in template.bindings:
        params["loras"] = [{"name": "kai.safetensors", "strength": 0.8}]
    applied = apply(template.graph, template.bindings, params)
    problems = preflight(applied.graph, info)
    pack = CUSTOM_PACKS.get(template.slug)
    if pack is None:
        assert problems == []
    else:
        # Without the custom node pack, the only problems are its missing classes, each saying
        # which pack to install.
        assert problems
        assert {p.code for p in problems} == {"unknown_class"}
        for problem in problems:
            assert f"comes from the custom node pack {pack}" in problem.message
            assert "install it on the server" in problem.message
        assert pack in template.description


@pytest.mark.parametrize("path", MODEL, ids=[p.stem for p in MODEL])
def test_model_template_is_refused_on_a_server_without_the_checkpoint(path):
    template = load_template_file(path)
    applied = apply(template.graph, template.bindings, {**PARAMS, "checkpoint": "anime/missing.safetensors"})
    messages = [p.message for p in preflight(applied.graph, _object_info_with(["other.safetensors"]))]
    assert any(
        "checkpoint 'anime/missing.safetensors' is not on this backend; it has: other.safetensors" in m
        for m in messages
    )


def _doc(**changes: Any) -> dict[str, Any]:
    doc = json.loads((WORKFLOWS / "weightless-image.json").read_text())
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"kind": "gif"}, "'kind' must be one of"),
        ({"slug": "Weightless Image"}, "'slug' must be lowercase"),
        ({"name": ""}, "'name' must be non-empty"),
        ({"weightless": "yes"}, "'weightless' must be true or false"),
        ({"graph": {"nodes": [], "links": []}}, "Export (API)"),
        ({"bindings": {"seed": {"node": "42", "input": "seed"}}}, "bindings: binding 'seed': no node matches node 42"),
        ({"extra": 1}, "unknown keys: extra"),
    ],
)
def test_bad_template_documents_are_refused(changes, fragment):
    with pytest.raises(TemplateFormatError) as exc:
        parse_template(_doc(**changes))
    assert fragment in str(exc.value)


def test_a_weightless_template_may_not_use_model_nodes():
    doc = _doc()
    doc["graph"]["9"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}}
    with pytest.raises(TemplateFormatError, match="a weightless template may not use CheckpointLoaderSimple"):
        parse_template(doc)
