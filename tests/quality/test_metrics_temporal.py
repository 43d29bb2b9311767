"""Temporal metrics on synthetic clips with known answers, through the real LPIPS loading code."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from quality.metrics import (
    EmptyMedia,
    MediaTooLarge,
    MetricModels,
    Status,
    TooFewFrames,
    UnreadableMedia,
    temporal_metrics,
)
from quality.metrics import reference as vbench
from quality.metrics.runtime import load_lpips, loaded_keys
from tests.quality.tiny_models import tiny_models as build_tiny_models

SIZE = 96


@pytest.fixture
def tiny_models():
    return build_tiny_models()


def texture(seed: int = 0, width: int = SIZE, height: int = SIZE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(base, (0, 0), 3).astype(np.float32)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # contrast for the flow


def panning(n: int, step: int = 2, seed: int = 0) -> list[np.ndarray]:
    """A camera pan across a texture that wraps around: frame n would equal frame 0 for n·step = width."""
    base = texture(seed)
    return [np.roll(base, step * i, axis=1) for i in range(n)]


def values(results: dict) -> dict[str, float]:
    return {k: r.value for k, r in results.items()}


def test_identical_frames_score_perfectly(tiny_models):
    frame = texture()
    r = values(temporal_metrics([frame] * 5, models=tiny_models, loop=True))
    assert r["temporal_lpips"] == pytest.approx(0.0, abs=1e-7)
    assert r["temporal_flicker"] == 1.0
    assert r["subject_consistency"] == pytest.approx(1.0, abs=1e-6)
    assert r["temporal_ssim"] == pytest.approx(1.0, abs=1e-6)
    assert r["motion_smoothness"] == pytest.approx(1.0, abs=1e-4)
    assert r["loop_seamlessness"] == 1.0


def test_shuffled_frames_score_worse_than_ordered(tiny_models):
    ordered = panning(12, step=3)
    shuffled = [ordered[i] for i in np.random.default_rng(5).permutation(12)]
    good = values(temporal_metrics(ordered, models=tiny_models))
    bad = values(temporal_metrics(shuffled, models=tiny_models))
    assert bad["temporal_lpips"] > good["temporal_lpips"]
    assert bad["temporal_flicker"] < good["temporal_flicker"]
    assert bad["motion_smoothness"] < good["motion_smoothness"]
    assert bad["temporal_ssim"] < good["temporal_ssim"]
    assert bad["subject_consistency"] <= good["subject_consistency"]


def test_a_seamless_loop_is_seamless_and_a_cut_is_not(tiny_models):
    loop = panning(SIZE // 2, step=2)  # the pan wraps exactly: last → first is one more step
    seamless = temporal_metrics(loop, models=tiny_models, loop=True)["loop_seamlessness"]
    assert seamless.details["seamless"] is True
    assert seamless.value > 0.9
    cut = panning(SIZE // 4, step=2)  # stops half way: last → first jumps back
    jump = temporal_metrics(cut, models=tiny_models, loop=True)["loop_seamlessness"]
    assert jump.details["seamless"] is False
    assert jump.value < seamless.value
    assert jump.details["seam_lpips"] > jump.details["typical_lpips"]


def test_a_hard_join_shows_at_the_join(tiny_models):
    clip = panning(6, seed=0) + panning(6, seed=9)
    r = temporal_metrics(clip, models=tiny_models, joins=[6])
    smooth = temporal_metrics(panning(12), models=tiny_models, joins=[6])
    assert r["join_ssim"].value < smooth["join_ssim"].value
    assert r["join_ssim"].details["joins"][0]["frame"] == 6
    assert r["join_flow_discontinuity"].value > smooth["join_flow_discontinuity"].value


def test_shared_features_equal_the_per_pair_loops(tiny_models):
    clip = panning(7, step=3) + panning(6, step=-2, seed=3)
    shared = values(temporal_metrics(clip, models=tiny_models, joins=[7], loop=True))
    loops = vbench.all_separately(clip, load_lpips(tiny_models), tiny_models.torch_device, joins=[7], loop=True)
    assert set(loops) == set(shared)
    for name, value in loops.items():
        assert shared[name] == pytest.approx(value, abs=1e-5), name


def test_lpips_pairs_equal_lpips_forward(tiny_models):
    clip = panning(4, step=5)
    per_pair = temporal_metrics(clip, models=tiny_models)["temporal_lpips"].details["per_pair"]
    forward = vbench.lpips_loop(clip, load_lpips(tiny_models), tiny_models.torch_device)
    assert per_pair == pytest.approx(forward, abs=1e-5)


def test_model_loaded_once_per_process(tiny_models):
    temporal_metrics(panning(3), models=tiny_models)
    before = [k for k in loaded_keys() if k[0] == "lpips"]
    temporal_metrics(panning(3), models=tiny_models)
    assert [k for k in loaded_keys() if k[0] == "lpips"] == before
    assert len(before) == 1


def test_without_weights_the_model_metrics_are_unavailable_with_the_fix(tmp_path):
    r = temporal_metrics(panning(4), models=MetricModels(root=tmp_path))
    for name in ("temporal_lpips", "subject_consistency"):
        assert r[name].status is Status.UNAVAILABLE
        assert r[name].value is None
        assert r[name].fix == "python manage.py fetch_models alexnet"
    assert r["temporal_flicker"].status is Status.OK
    assert r["motion_smoothness"].status is Status.OK


def test_large_frames_are_scaled_once_and_flow_is_in_input_pixels():
    base = texture(width=640, height=640)
    clip = [np.roll(base, 8 * i, axis=1) for i in range(3)]
    r = temporal_metrics(clip, models=None)
    assert r["flow_magnitude"].value == pytest.approx(8.0, rel=0.25)


def test_video_file_is_decoded(tiny_models):
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for frame in panning(6):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    r = temporal_metrics(buffer.getvalue(), models=tiny_models)
    assert r["temporal_flicker"].status is Status.OK
    assert len(r["temporal_flicker"].details["per_pair"]) == 5


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_bad_input_raises_clear_errors():
    with pytest.raises(TooFewFrames):
        temporal_metrics([texture()], models=None)
    with pytest.raises(TooFewFrames):
        temporal_metrics(_png(Image.fromarray(texture())), models=None)
    with pytest.raises(EmptyMedia):
        temporal_metrics(b"", models=None)
    with pytest.raises(EmptyMedia):
        temporal_metrics([], models=None)
    with pytest.raises(UnreadableMedia):
        temporal_metrics(b"not a video at all" * 10, models=None)
    with pytest.raises(UnreadableMedia):
        temporal_metrics([texture(), texture(width=SIZE + 8)], models=None)
    # 50 megapixels of 1-bit PNG is a few kB on disk: refused before a pixel is decoded.
    with pytest.raises(MediaTooLarge):
        temporal_metrics(_png(Image.new("1", (10_000, 5_000))), models=None)
    with pytest.raises(ValueError, match="joins"):
        temporal_metrics(panning(3), models=None, joins=[3])
