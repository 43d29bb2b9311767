"""generation.film.frames: every frame in order and the last frame as PNG, for each kind of clip the
templates save (MP4, WebM, animated WebP, GIF), on clips whose frames say their own number."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from generation.film.frames import FrameError, first_frame, iter_frames, last_frame, last_frame_png

STEP = 20  # grey levels between numbered frames: far beyond what lossy coding moves a flat frame


def numbered_frame(number: int, size: int = 64) -> np.ndarray:
    """A flat grey frame whose level says its number (0, 20, 40, … wrapping before 250)."""
    return np.full((size, size, 3), (number * STEP) % 240 + 5, dtype=np.uint8)


def frame_number(frame: np.ndarray) -> int:
    return round((float(frame.mean()) - 5) / STEP)


def make_clip(
    path: Path, frames: list[np.ndarray], *, fps: int = 24, codec: str | None = None, gop: int | None = None
) -> Path:
    """Write ``frames`` as a clip whose format follows the suffix (mp4 H.264, webm VP9, webp, gif)."""
    suffix = path.suffix.lower()
    if suffix in (".webp", ".gif"):
        images = [Image.fromarray(f) for f in frames]
        extra = {"lossless": True} if suffix == ".webp" else {}
        images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, **extra)
        return path
    codec = codec or ("libvpx-vp9" if suffix == ".webm" else "libx264")
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".webp", ".gif"])
def test_every_frame_in_order_and_the_last_as_png(tmp_path: Path, suffix: str) -> None:
    clip = make_clip(tmp_path / f"clip{suffix}", [numbered_frame(n) for n in range(9)], gop=4)

    frames = list(iter_frames(clip))
    assert [frame_number(f) for f in frames] == list(range(9))
    assert frames[0].shape == (64, 64, 3) and frames[0].dtype == np.uint8
    assert frame_number(first_frame(clip)) == 0
    assert frame_number(last_frame(clip)) == 8

    png = last_frame_png(clip)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
        assert frame_number(np.asarray(image)) == 8


def test_last_frame_of_a_long_video_with_many_keyframes(tmp_path: Path) -> None:
    # The tail is decoded from the last keyframe: the answer must still be the very last frame.
    clip = make_clip(tmp_path / "long.mp4", [numbered_frame(n % 11) for n in range(100)], gop=12)
    assert frame_number(last_frame(clip)) == 99 % 11


def test_a_still_image_is_its_own_last_frame(tmp_path: Path) -> None:
    still = tmp_path / "still.png"
    Image.fromarray(numbered_frame(3)).save(still)
    assert frame_number(last_frame(still)) == 3
    assert len(list(iter_frames(still))) == 1


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 10])
def test_empty_or_unreadable_files_are_refused_clearly(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(content)
    with pytest.raises(FrameError):
        last_frame_png(bad)
    with pytest.raises(FrameError):
        list(iter_frames(bad))
    with pytest.raises(FrameError, match="missing"):
        last_frame_png(tmp_path / "absent.webm")
