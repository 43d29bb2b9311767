"""Shipped templates, once applied, are accepted and run by a ComfyUI (the fake, on a real port)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from generation.workflow import apply, load_template_file
from tests.factories import png_bytes
from tests.fakes.comfyui import FakeComfy

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
CORE = [
    p
    for p in sorted(WORKFLOWS.glob("*.json"))
    # Custom node packs this fake serves only on request; test_segment_templates runs FramePack with it.
    if p.stem not in {"ipadapter-character", "animatediff-loop", "character-sheet", "framepack-segment"}
]


@pytest.fixture(scope="module")
def comfy():
    with FakeComfy(checkpoints=["anime_v1.safetensors"], loras=["kai_style.safetensors"]) as fake:
        yield fake


def _run(comfy: FakeComfy, graph: dict) -> dict:
    with httpx.Client(base_url=comfy.url, timeout=10) as client:
        response = client.post("/prompt", json={"prompt": graph, "client_id": "tower-test"})
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
    entry = comfy.wait_for(lambda: comfy.history.get(prompt_id), timeout=10, what=f"prompt {prompt_id}")
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry["outputs"]


@pytest.mark.parametrize("path", CORE, ids=[p.stem for p in CORE])
def test_shipped_template_runs(comfy, path):
    template = load_template_file(path)
    with httpx.Client(base_url=comfy.url, timeout=10) as client:
        upload = client.post("/upload/image", files={"image": ("tower_init.png", png_bytes(96, 64), "image/png")})
        assert upload.status_code == 200, upload.text
        uploaded = upload.json()["name"]
    params = {
        "prompt": "kaiN, 1boy",
        "negative": "lowres",
        "seed": 7,
        "steps": 2,
        "width": 64,
        "height": 64,
        "frames": 4,
        "fps": 8,
        "init_image": uploaded,
        "reference_image": uploaded,
        "checkpoint": "anime_v1.safetensors",
        "filename_prefix": f"tower/{template.slug}",
    }
    if "loras" in template.bindings:
        params["loras"] = [{"name": "kai_style.safetensors", "strength": 0.7}]
    graph = apply(template.graph, template.bindings, params).graph
    outputs = _run(comfy, graph)
    files = [f for output in outputs.values() for key in ("images", "gifs", "videos") for f in output.get(key, [])]
    assert files, json.dumps(outputs)
    assert all(f["filename"].startswith(template.slug) for f in files)


def test_custom_node_templates_are_refused_by_a_server_without_the_pack(comfy):
    template = load_template_file(WORKFLOWS / "animatediff-loop.json")
    graph = apply(template.graph, template.bindings, {"checkpoint": "anime_v1.safetensors", "seed": 1}).graph
    with httpx.Client(base_url=comfy.url, timeout=10) as client:
        response = client.post("/prompt", json={"prompt": graph})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_prompt"
