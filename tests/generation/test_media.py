from __future__ import annotations

import io
import json

import av
import numpy as np
import pytest
from PIL import Image

from generation.media import MediaError, png_add_text, png_text_chunks, probe


def _png(size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _animated(fmt: str, frames: int = 6, ms: int = 100) -> bytes:
    buf = io.BytesIO()
    images = [Image.new("RGB", (16, 16), (i * 30, 0, 0)) for i in range(frames)]
    images[0].save(buf, format=fmt, save_all=True, append_images=images[1:], duration=ms, loop=0)
    return buf.getvalue()


def _mp4(frames: int = 12, fps: int = 8) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 10, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def test_probe_still_image():
    info = probe(_png())
    assert (info.kind, info.mime, info.width, info.height, info.frames) == ("image", "image/png", 32, 24, 1)


@pytest.mark.parametrize(("fmt", "mime"), [("WEBP", "image/webp"), ("PNG", "image/apng"), ("GIF", "image/gif")])
def test_probe_animations_counts_frames_and_fps(fmt, mime):
    info = probe(_animated(fmt))
    assert (info.kind, info.mime, info.frames) == ("animation", mime, 6)
    assert info.duration_seconds == pytest.approx(0.6, abs=0.02)
    assert info.fps == pytest.approx(10, abs=0.3)


@pytest.mark.parametrize(("ms", "fps"), [(41, 24), (83, 12), (40, 25), (16, 60), (33, 30)])
def test_an_animation_at_a_common_rate_reports_the_rate_it_was_asked_for(ms, fps):
    # ComfyUI writes int(1000 / fps) milliseconds a frame: a 24 fps loop is stored at 41 ms.
    buf = io.BytesIO()
    images = [Image.new("RGB", (16, 16), (i * 5, 255 - i * 5, 0)) for i in range(48)]
    images[0].save(buf, format="WEBP", save_all=True, append_images=images[1:], duration=ms, lossless=True)
    info = probe(buf.getvalue())
    assert (info.frames, info.fps) == (48, fps)
    assert info.duration_seconds == pytest.approx(48 * ms / 1000)


def test_an_animation_at_no_common_rate_reports_its_exact_rate():
    assert probe(_animated("WEBP", frames=6, ms=70)).fps == pytest.approx(14.286, abs=0.001)


def test_probe_video():
    info = probe(_mp4(), filename="clip_00001.mp4")
    assert (info.kind, info.mime, info.extension, info.width, info.height) == ("video", "video/mp4", "mp4", 64, 48)
    assert info.frames == 12
    assert info.fps == pytest.approx(8)
    assert info.duration_seconds == pytest.approx(1.5, abs=0.15)


@pytest.mark.parametrize("junk", [b"", b"hello world", _png()[:40]])
def test_junk_is_refused(junk):
    with pytest.raises(MediaError):
        probe(junk)


def test_png_text_round_trip_keeps_pixels_and_existing_chunks():
    original = _png()
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 42, "text": "café ☕"}}}
    once = png_add_text(original, {"prompt": graph, "tower": {"seed": 42}})
    twice = png_add_text(once, {"prompt": {"other": True}})
    assert twice == once  # an existing key is never overwritten
    chunks = png_text_chunks(once)
    assert json.loads(chunks["prompt"]) == graph
    with Image.open(io.BytesIO(once)) as image:
        image.load()
        assert image.info["tower"] == '{"seed":42}'
        assert image.tobytes() == Image.open(io.BytesIO(original)).tobytes()
    # Deterministic: the same parameters give the same bytes (reproduce compares sha256).
    assert png_add_text(original, {"prompt": graph, "tower": {"seed": 42}}) == once
