"""The phase templates: the weightless ones make exactly the phases' specifications on the fake
ComfyUI (which runs their nodes on real pixels), and the model ones bind and validate."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageSequence

from generation.workflow import ParameterError, apply, load_template_file, pose_count, sheet_layout
from projects.models import DEFAULT_SHEET_POSES
from tests.fakes.comfyui import FakeComfy

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


def _reference() -> Image.Image:
    """An asymmetric picture: a gradient with shapes off-centre, so no flip or crop looks the same."""
    width, height = 300, 420
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2], -1)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 30, 150, 140), fill=(240, 200, 60))
    draw.rectangle((180, 260, 280, 400), fill=(20, 40, 200))
    draw.line((0, 0, 299, 200), fill=(255, 255, 255), width=9)
    return image


@pytest.fixture(scope="module")
def comfy():
    with FakeComfy() as fake:
        yield fake


@pytest.fixture(scope="module")
def uploaded(comfy):
    buffer = io.BytesIO()
    _reference().save(buffer, format="PNG")
    with httpx.Client(base_url=comfy.url, timeout=10) as client:
        response = client.post("/upload/image", files={"image": ("tower_ref.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 200, response.text
    return response.json()["name"]


def _run(comfy: FakeComfy, slug: str, params: dict) -> tuple[dict, bytes]:
    template = load_template_file(WORKFLOWS / f"{slug}.json")
    graph = apply(template.graph, template.bindings, params).graph
    with httpx.Client(base_url=comfy.url, timeout=30) as client:
        response = client.post("/prompt", json={"prompt": graph, "client_id": "tower-test"})
        assert response.status_code == 200, response.text
        prompt_id = response.json()["prompt_id"]
        entry = comfy.wait_for(lambda: comfy.history.get(prompt_id), timeout=60, what=f"prompt {prompt_id}")
        assert entry["status"]["status_str"] == "success", entry["status"]
        [file] = [f for out in entry["outputs"].values() for f in out.get("images", [])]
        data = client.get("/view", params=file).content
    return file, data


def _scaled(image: Image.Image, width: int, height: int) -> np.ndarray:
    """ImageScale with crop "center": cut the sides to the new aspect, then resize."""
    old = image.width / image.height
    new = width / height
    x = round((image.width - image.width * new / old) / 2) if old > new else 0
    y = round((image.height - image.height * old / new) / 2) if old < new else 0
    box = (x, y, image.width - x, image.height - y)
    return np.asarray(image.crop(box).resize((width, height), Image.LANCZOS).convert("RGB"))


def _mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_weightless_sheet_is_8_distinct_panels_in_one_1024_square(comfy, uploaded):
    file, data = _run(
        comfy,
        "weightless-sheet",
        {"reference_image": uploaded, "seed": 11, "prompt": "red hair", "poses": list(DEFAULT_SHEET_POSES)},
    )
    sheet = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert file["filename"].endswith(".png") and sheet.shape == (1024, 1024, 3)
    panels = [sheet[r * 512 : (r + 1) * 512, c * 256 : (c + 1) * 256] for r in range(2) for c in range(4)]
    differences = {(i, j): _mean_diff(panels[i], panels[j]) for i, j in itertools.combinations(range(8), 2)}
    alike = {pair: round(d, 1) for pair, d in differences.items() if d < 12}
    assert not alike, f"panels too alike (mean abs difference in levels): {alike}"
    # The first panel is the reference itself (scaled, lightly tinted and grained), not a stranger.
    assert _mean_diff(panels[0], _scaled(_reference(), 256, 512)) < min(differences.values())


def test_weightless_sheet_panels_differ_even_for_a_flat_reference(comfy):
    """A one-colour reference makes every flip and crop identical: the pose tints and the grain
    still tell the panels apart."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(buffer, format="PNG")
    with httpx.Client(base_url=comfy.url, timeout=10) as client:
        name = client.post("/upload/image", files={"image": ("flat.png", buffer.getvalue(), "image/png")}).json()[
            "name"
        ]
    _, data = _run(comfy, "weightless-sheet", {"reference_image": name, "seed": 3, "poses": list(DEFAULT_SHEET_POSES)})
    sheet = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    panels = [sheet[r * 512 : (r + 1) * 512, c * 256 : (c + 1) * 256] for r in range(2) for c in range(4)]
    means = [p.reshape(-1, 3).mean(axis=0) for p in panels]
    for i, j in itertools.combinations(range(8), 2):
        assert _mean_diff(panels[i], panels[j]) > 3, (i, j)
        assert np.abs(means[i] - means[j]).max() > 1, (i, j)  # not only grain: another tint


def test_weightless_loop_is_48_frames_at_24_fps_that_close_the_loop(comfy, uploaded):
    file, data = _run(comfy, "weightless-loop", {"init_image": uploaded, "seed": 5})
    assert file["filename"].endswith(".webp")
    with Image.open(io.BytesIO(data)) as webp:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(webp)]
        duration = webp.info["duration"]
    assert len(frames) == 48
    assert duration == int(1000 / 24)  # what ComfyUI writes for 24 fps
    steps = [_mean_diff(a, b) for a, b in itertools.pairwise(frames)]
    seam = _mean_diff(frames[-1], frames[0])
    assert max(steps) < 3, steps  # gentle: no jump between frames
    assert max(_mean_diff(f, frames[0]) for f in frames) > 6  # yet it moves
    assert seam <= 2 * float(np.median(steps)) + 1, (seam, steps)  # the last frame leads into the first


def test_weightless_video_is_120_frames_at_24_fps_starting_on_the_input(comfy, uploaded, tmp_path):
    file, data = _run(comfy, "weightless-video", {"init_image": uploaded, "seed": 9})
    assert file["filename"].endswith(".mp4")
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    capture = cv2.VideoCapture(str(path))
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    assert len(frames) == 120
    assert fps == pytest.approx(24.0)
    # The input, centre-cropped to a square and scaled to 256×256 as ImageScale does.
    assert frames[0].shape == (256, 256, 3)
    assert _mean_diff(frames[0], _scaled(_reference(), 256, 256)) < 4  # YUV 4:2:0 rounding only
    assert max(_mean_diff(a, b) for a, b in itertools.pairwise(frames)) < 3
    assert max(_mean_diff(f, frames[0]) for f in frames) > 6


def test_frames_and_seed_reach_the_loop():
    template = load_template_file(WORKFLOWS / "weightless-loop.json")
    one = apply(template.graph, template.bindings, {"init_image": "a.png", "seed": 1, "frames": 96}).graph
    two = apply(template.graph, template.bindings, {"init_image": "a.png", "seed": 2, "frames": 96}).graph
    assert one["6"]["inputs"]["length"] == 96
    assert one["3"]["inputs"]["blend_factor"] != two["3"]["inputs"]["blend_factor"]
    assert 0.5 <= one["3"]["inputs"]["blend_factor"] <= 1.0


def test_the_sheet_template_records_its_layout():
    for slug in ("weightless-sheet", "character-sheet"):
        template = load_template_file(WORKFLOWS / f"{slug}.json")
        assert template.layout == {"columns": 4, "rows": 2} == sheet_layout(pose_count(template.bindings))
        assert pose_count(template.bindings) == len(DEFAULT_SHEET_POSES)


def test_poses_must_match_the_sheet():
    template = load_template_file(WORKFLOWS / "weightless-sheet.json")
    with pytest.raises(ParameterError, match=r"draws 8 poses .* must list 8, not 3"):
        apply(template.graph, template.bindings, {"poses": ["front", "back", "side"]})
    with pytest.raises(ParameterError, match="poses must be a non-empty list"):
        apply(template.graph, template.bindings, {"poses": "front view"})
    with pytest.raises(ParameterError, match="poses item 2 must be non-empty text"):
        apply(template.graph, template.bindings, {"poses": ["a", "b", " ", "d", "e", "f", "g", "h"]})


def test_layout_in_a_template_file_must_fit_its_poses():
    from generation.workflow import TemplateFormatError, parse_template

    doc = json.loads((WORKFLOWS / "weightless-sheet.json").read_text())
    with pytest.raises(TemplateFormatError, match=r"'layout' must be \{\"columns\": 4, \"rows\": 2\}"):
        parse_template({**doc, "layout": {"columns": 2, "rows": 4}})
    with pytest.raises(TemplateFormatError, match='needs "layout"'):
        parse_template({key: value for key, value in doc.items() if key != "layout"})


@pytest.mark.django_db
def test_the_projects_poses_reach_the_sheet_with_the_prompt(project, owner, enqueued):
    from generation.services.inputs import ImageSource
    from generation.services.submit import jobs_create
    from generation.workflow import TRANSFORMS
    from tests.generation.engine_helpers import shipped

    poses = [f"pose {n}" for n in range(8)]
    project.sheet_poses = poses
    project.save(update_fields=["sheet_poses"])
    reference = ImageSource(path="inputs/ref.png", sha256="1" * 64, extension="png")
    [job] = jobs_create(
        user=owner,
        project=project,
        template=shipped("weightless-sheet"),
        prompt="red hair",
        images={"reference_image": reference},
    )
    assert job.params["poses"] == poses
    tints = [job.graph[str(21 + n)]["inputs"]["color"] for n in range(8)]
    prompt = job.prompt
    assert tints == [TRANSFORMS["color_from_text"](f"{prompt}, pose {n}") for n in range(8)]
    assert len(set(tints)) == 8
    project.sheet_poses = poses[:5]
    project.save(update_fields=["sheet_poses"])
    with pytest.raises(Exception, match="draws 8 poses"):
        jobs_create(
            user=owner, project=project, template=shipped("weightless-sheet"), images={"reference_image": reference}
        )


# Required inputs of the node-pack classes the phase templates use, as their packs declare them
# (cubiq/ComfyUI_IPAdapter_plus, Kosinkadink/ComfyUI-AnimateDiff-Evolved).
PACK_INPUTS = {
    "IPAdapterUnifiedLoader": {"model", "preset"},
    "IPAdapterAdvanced": {
        "model",
        "ipadapter",
        "image",
        "weight",
        "weight_type",
        "combine_embeds",
        "start_at",
        "end_at",
        "embeds_scaling",
    },
    "ADE_LoopedUniformContextOptions": {"context_length", "context_stride", "context_overlap", "closed_loop"},
    "ADE_MultivalDynamic": {"float_val"},
    "ADE_AnimateDiffLoaderGen1": {"model", "model_name", "beta_schedule", "context_options", "scale_multival"},
}


@pytest.mark.parametrize("slug", ["character-sheet", "animatediff-loop", "svd-video"])
def test_model_phase_templates_fit_the_nodes_they_use(slug):
    info = json.loads((Path(__file__).resolve().parents[1] / "fakes/recordings/object_info_full.json").read_text())
    info = info.get("body", info)
    template = load_template_file(WORKFLOWS / f"{slug}.json")
    for node_id, node in template.graph.items():
        inputs = set(node["inputs"])
        if node["class_type"] in PACK_INPUTS:
            assert inputs == PACK_INPUTS[node["class_type"]], node_id
            continue
        spec = info[node["class_type"]]["input"]
        required = set(spec.get("required", {}))
        assert required <= inputs <= required | set(spec.get("optional", {})), (node_id, node["class_type"])
        for name, value in node["inputs"].items():
            kind = spec["required"].get(name, spec.get("optional", {}).get(name))[0]
            options = kind if isinstance(kind, list) else None
            if kind == "COMBO":
                options = spec["required"].get(name, [None, {}])[1].get("options")
            if options and not isinstance(value, list) and node["class_type"] not in {"LoadImage"}:
                assert value in options or node["class_type"].endswith("Loader"), (node_id, name, value)


def test_the_sheet_draws_the_default_poses_with_the_prompt():
    template = load_template_file(WORKFLOWS / "character-sheet.json")
    graph = apply(
        template.graph,
        template.bindings,
        {"prompt": "kai, red scarf", "poses": list(DEFAULT_SHEET_POSES), "reference_image": "tower-ref.png"},
    ).graph
    texts = [graph[str(20 + n)]["inputs"]["text"] for n in range(8)]
    assert texts == [f"kai, red scarf, {pose}" for pose in DEFAULT_SHEET_POSES]
    assert graph["12"]["inputs"]["image"] == "tower-ref.png"
    samplers = [n for n in graph.values() if n["class_type"] == "KSampler"]
    assert len(samplers) == 8 and all(s["inputs"]["model"] == ["13", 0] for s in samplers)  # all through IPAdapter


def test_the_video_chains_five_svd_passes_to_120_frames():
    template = load_template_file(WORKFLOWS / "svd-video.json")
    graph = template.graph
    passes = [n for n in graph.values() if n["class_type"] == "SVD_img2vid_Conditioning"]
    assert len(passes) == 5 and all(p["inputs"]["video_frames"] == 25 for p in passes)
    assert 25 + 4 * 24 >= 120 == graph["90"]["inputs"]["length"]
    assert graph["91"]["inputs"]["fps"] == 24.0


# --- through the engine: a character's sheet job on the fake ComfyUI ------------------------------


@pytest.fixture
def sheet_backend(tmp_path, settings):
    from tests.generation.engine_helpers import backend_for
    from tests.generation.test_image_inputs import IPADAPTER_NODES

    settings.TOWER_ENGINE_SESSION_JOBS = 1
    with FakeComfy(
        root=tmp_path / "comfy", checkpoints=["anime_v1.safetensors"], extra_object_info=IPADAPTER_NODES
    ) as server:
        backend_for(server)
        yield server


def _character_with_reference(project):
    from characters.services import character_add_reference, character_create

    kai = character_create(project=project, name="Kai", design_prompt="1boy, silver hair")
    buffer = io.BytesIO()
    _reference().save(buffer, format="PNG")
    buffer.seek(0)
    character_add_reference(character=kai, upload=buffer)
    return kai


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("channel_layer")
@pytest.mark.parametrize("slug", ["weightless-sheet", "character-sheet"])
def test_a_characters_sheet_job_makes_one_1024_sheet_with_its_layout(sheet_backend, project, owner, enqueued, slug):
    from generation import tasks
    from generation.models import Asset
    from generation.services.submit import jobs_create
    from tests.generation.engine_helpers import job, shipped

    kai = _character_with_reference(project)
    overrides = {"checkpoint": "anime_v1.safetensors", "steps": 2, "width": 64, "height": 128}
    [created] = jobs_create(
        user=owner, project=project, template=shipped(slug), character=kai, prompt="red scarf", overrides=overrides
    )
    assert tasks.job_run(created.pk) == "succeeded", job(created.pk).error_message
    [asset] = Asset.objects.filter(job=created)
    assert (asset.width, asset.height) == (1024, 1024)
    assert asset.metadata["sheet_layout"] == {"columns": 4, "rows": 2}
    assert asset.metadata["params"]["poses"] == list(DEFAULT_SHEET_POSES)
    sent = sheet_backend.history[job(created.pk).prompt_id]["prompt"][2]
    [loader] = [n for n in sent.values() if n["class_type"] == "LoadImage"]
    assert loader["inputs"]["image"] == created.params["reference_image"]


@pytest.mark.django_db
def test_the_template_page_rows_name_each_pose_target():
    from generation.services.templates import template_binding_rows
    from tests.generation.engine_helpers import shipped

    [poses] = [row for row in template_binding_rows(template=shipped("character-sheet")) if row.parameter == "poses"]
    assert poses.targets[0] == "node 20 or class CLIPTextEncode · text (pose 1)"
    assert len(poses.targets) == 8 and poses.follows_style and poses.value is None


@pytest.mark.parametrize(
    ("bindings", "says"),
    [
        ({"poses": [{"node": "1", "input": "text"}]}, "each target needs a 'pose' index"),
        ({"poses": [{"node": "1", "input": "text", "pose": -1}]}, "each target needs a 'pose' index"),
        ({"poses": [{"node": "1", "input": "text", "pose": "0"}]}, "each target needs a 'pose' index"),
        ({"prompt": [{"node": "1", "input": "text", "pose": 0}]}, "only 'poses' targets take a 'pose' index"),
    ],
)
def test_pose_targets_are_checked(bindings, says):
    from generation.workflow import BindingError, normalize_bindings

    with pytest.raises(BindingError, match=says):
        normalize_bindings(bindings)


def test_the_video_starts_on_the_first_frame_of_a_loop_given_as_its_image(comfy, uploaded, tmp_path):
    """The next phase may be handed the loop itself: LoadImage loads every frame of an animated
    file, and the video takes the first."""
    _, loop = _run(comfy, "weightless-loop", {"init_image": uploaded, "seed": 5})
    with httpx.Client(base_url=comfy.url, timeout=10) as client:
        name = client.post("/upload/image", files={"image": ("loop.webp", loop, "image/webp")}).json()["name"]
    _, data = _run(comfy, "weightless-video", {"init_image": name, "seed": 9})
    path = tmp_path / "from-loop.mp4"
    path.write_bytes(data)
    capture = cv2.VideoCapture(str(path))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, first = capture.read()
    finally:
        capture.release()
    with Image.open(io.BytesIO(loop)) as webp:
        loop_first = np.asarray(webp.convert("RGB"))
    assert ok and count == 120
    assert _mean_diff(cv2.cvtColor(first, cv2.COLOR_BGR2RGB), loop_first) < 4
