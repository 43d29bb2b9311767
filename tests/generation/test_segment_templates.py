"""The segment templates: what they bind, the weightless one's real motion and controllable jump on the
fake ComfyUI (which computes its nodes' pixels as ComfyUI does), FramePack against its node pack's
definitions, and pre-flight naming the node pack and the model files a server lacks."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
from PIL import Image

from generation.workflow import TRANSFORMS, apply, load_template_file, preflight
from quality.metrics.temporal import temporal_metrics
from tests.fakes.comfyui import FakeComfy
from tests.generation.test_templates_phases import _reference, _scaled

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"
FRAMEPACK_FILES = {
    "diffusion_models": ["FramePackI2V_HY_fp8_e4m3fn.safetensors"],
    "text_encoders": ["clip_l.safetensors", "llava_llama3_fp16.safetensors"],
    "clip_visions": ["sigclip_vision_patch14_384.safetensors"],
    "vaes": ["hunyuan_video_vae_bf16.safetensors"],
}


@pytest.fixture(scope="module")
def comfy():
    with FakeComfy(framepack=True, **FRAMEPACK_FILES) as fake:
        yield fake


@pytest.fixture(scope="module")
def client(comfy):
    with httpx.Client(base_url=comfy.url, timeout=60) as client:
        yield client


def _upload(client: httpx.Client, image: Image.Image | np.ndarray, name: str) -> str:
    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG")
    response = client.post("/upload/image", files={"image": (name, buffer.getvalue(), "image/png")})
    assert response.status_code == 200, response.text
    return response.json()["name"]


def _run(comfy: FakeComfy, client: httpx.Client, slug: str, params: dict) -> tuple[list[np.ndarray], float]:
    """The template's clip on the fake: its frames (RGB) and frame rate."""
    template = load_template_file(WORKFLOWS / f"{slug}.json")
    graph = apply(template.graph, template.bindings, params).graph
    response = client.post("/prompt", json={"prompt": graph, "client_id": "tower-test"})
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    entry = comfy.wait_for(lambda: comfy.history.get(prompt_id), timeout=120, what=f"prompt {prompt_id}")
    assert entry["status"]["status_str"] == "success", entry["status"]
    [file] = [f for out in entry["outputs"].values() for f in out.get("images", [])]
    assert file["filename"].endswith(".mp4")
    with av.open(io.BytesIO(client.get("/view", params=file).content)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, float(stream.average_rate or 0)


def _object_info(fake: FakeComfy) -> dict:
    return httpx.get(f"{fake.url}/object_info", timeout=30).json()


def _shift(a: np.ndarray, b: np.ndarray) -> float:
    """How far b's content moved from a's, horizontally (phase correlation: exact for a wrapped pan)."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float32) for f in (a, b)]
    (dx, _dy), _response = cv2.phaseCorrelate(grey[0], grey[1])
    return float(dx)


# --- what each segment template binds ----------------------------------------------------------------


@pytest.mark.parametrize("slug", ["weightless-segment", "svd-segment", "framepack-segment", "animatediff-loop"])
def test_segment_templates_bind_the_first_frame_length_rate_and_seed(slug):
    template = load_template_file(WORKFLOWS / f"{slug}.json")
    assert {"init_image", "frames", "fps", "seed"} <= set(template.bindings)
    if template.kind == "segment":
        assert "prompt" in template.bindings or slug == "svd-segment"  # SVD takes no text


def test_weightless_segment_binds_motion_and_discontinuity_on_weightless_nodes_only():
    template = load_template_file(WORKFLOWS / "weightless-segment.json")
    assert template.weightless and template.kind == "segment"
    recorded = json.loads((Path(__file__).resolve().parents[1] / "fakes/recordings/weightless_nodes.json").read_text())
    assert {n["class_type"] for n in template.graph.values()} <= set(recorded["passed"]) | {"LoadImage"}
    graph = apply(template.graph, template.bindings, {"init_image": "a.png", "motion": 6.4, "discontinuity": 0.25})
    crops = [n for n in graph.graph.values() if n["class_type"] == "ImageCrop"]
    assert crops and all(c["inputs"]["x"] == 6 for c in crops)  # whole pixels
    assert graph.graph["7"]["inputs"]["blend_factor"] == 0.25


# --- the weightless segment on the fake ComfyUI -----------------------------------------------------


def test_weightless_segment_pans_from_the_exact_first_frame(comfy, client):
    first = _upload(client, _reference(), "ws_ref.png")
    frames, fps = _run(comfy, client, "weightless-segment", {"init_image": first, "seed": 1, "fps": 24})
    assert len(frames) == 24 and fps == pytest.approx(24)
    assert frames[0].shape == (256, 256, 3)
    expected = _scaled(_reference(), 256, 256).astype(np.float32)
    assert np.abs(frames[0].astype(np.float32) - expected).mean() < 4  # YUV 4:2:0 and the 1% grain only
    shifts = [_shift(a, b) for a, b in itertools.pairwise(frames)]
    assert all(s == pytest.approx(-4, abs=0.5) for s in shifts), shifts  # 4 px a frame, to the left
    assert np.abs(frames[-1].astype(np.float32) - frames[0]).mean() > 20  # it really moved

    still, _ = _run(comfy, client, "weightless-segment", {"init_image": first, "seed": 1, "motion": 0, "frames": 6})
    assert len(still) == 6
    assert max(abs(_shift(a, b)) for a, b in itertools.pairwise(still)) < 0.5

    fast, _ = _run(comfy, client, "weightless-segment", {"init_image": first, "seed": 2, "motion": 10, "frames": 48})
    assert len(fast) == 48
    assert np.median([_shift(a, b) for a, b in itertools.pairwise(fast)]) == pytest.approx(-10, abs=0.5)


def _join(before: list[np.ndarray], after: list[np.ndarray]) -> tuple[float, float, float]:
    """(SSIM, flow-change ratio, mean jump in grey levels) across the join; after's first frame (the
    duplicate of before's last) dropped, as assembly does."""
    tail, head = before[-6:], after[1:7]
    results = temporal_metrics([*tail, *head], models=None, joins=[len(tail)])
    jump = float(np.abs(after[0].astype(np.float32) - before[-1]).mean())
    return results["join_ssim"].value, results["join_flow_discontinuity"].value, jump


def test_discontinuity_makes_a_measurable_jump_at_the_join(comfy, client):
    first = _upload(client, _reference(), "join_ref.png")
    one, _ = _run(comfy, client, "weightless-segment", {"init_image": first, "seed": 1})
    last = _upload(client, one[-1], "join_last.png")
    verdicts = {}
    for d in (0.0, 0.3, 1.0):
        two, _ = _run(comfy, client, "weightless-segment", {"init_image": last, "seed": 2, "discontinuity": d})
        verdicts[d] = _join(one, two)
    smooth, jump, cut = verdicts[0.0], verdicts[0.3], verdicts[1.0]
    assert smooth[1] <= 3.0 and smooth[2] < 4  # continues the pan: like any other pair of frames
    assert jump[1] > 3.0 * 3 and jump[2] > 20  # a project's default gate (flow ≤ 3) fails it
    assert cut[0] < smooth[0] - 0.05 and cut[2] > jump[2]  # the picture itself breaks


# --- FramePack ----------------------------------------------------------------------------------------


def test_framepack_fits_its_node_pack_and_the_core_nodes(comfy):
    template = load_template_file(WORKFLOWS / "framepack-segment.json")
    graph = apply(template.graph, template.bindings, {"init_image": "first.png", "prompt": "walks", "seed": 5}).graph
    assert preflight(graph, _object_info(comfy)) == []
    sampler = graph["12"]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["guidance_scale"]) == (30, 1.0, 6.0)
    assert (sampler["latent_window_size"], sampler["teacache_rel_l1_thresh"]) == (9, 0.15)
    assert sampler["gpu_memory_preservation"] == 6.0 and sampler["use_teacache"] is True
    assert graph["1"]["inputs"]["quantization"] == "fp8_e4m3fn"
    assert (graph["7"]["inputs"]["width"], graph["7"]["inputs"]["height"]) == (544, 704)
    assert graph["2"]["inputs"]["type"] == "hunyuan_video"
    assert graph["10"]["inputs"]["text"] == "walks"


@pytest.mark.parametrize(("frames", "seconds"), [(1, 1.2), (37, 1.2), (38, 2.4), (145, 4.8), (146, 6.0)])
def test_framepack_renders_enough_sections_for_the_frames_asked(frames, seconds):
    assert TRANSFORMS["framepack_seconds"](frames) == seconds


def test_framepack_segment_runs_on_a_server_with_the_pack(comfy, client):
    first = _upload(client, _reference(), "fp_ref.png")
    frames, fps = _run(comfy, client, "framepack-segment", {"init_image": first, "seed": 3, "frames": 60})
    assert len(frames) == 60 and fps == pytest.approx(30)
    assert frames[0].shape == (704, 544, 3)


# --- pre-flight names what a server lacks ---------------------------------------------------------------


def test_preflight_names_the_node_pack_and_the_model_files_missing():
    template = load_template_file(WORKFLOWS / "framepack-segment.json")
    graph = apply(template.graph, template.bindings, {"init_image": "first.png"}).graph
    with FakeComfy() as bare:
        messages = [p.message for p in preflight(graph, _object_info(bare))]
    text = "\n".join(messages)
    assert "no node class 'LoadFramePackModel'; it comes from the custom node pack ComfyUI-FramePackWrapper" in text
    assert "no node class 'FramePackSampler'; it comes from the custom node pack ComfyUI-FramePackWrapper" in text
    for file in ("clip_l.safetensors", "llava_llama3_fp16.safetensors", "sigclip_vision_patch14_384.safetensors"):
        assert f"'{file}' is not on this backend" in text
    assert "VAE 'hunyuan_video_vae_bf16.safetensors' is not on this backend" in text

    loop = load_template_file(WORKFLOWS / "animatediff-loop.json")
    with FakeComfy(checkpoints=["v1-5-pruned-emaonly.safetensors"]) as bare:
        messages = [p.message for p in preflight(loop.graph, _object_info(bare))]
    assert any("ComfyUI-AnimateDiff-Evolved" in m for m in messages), messages
