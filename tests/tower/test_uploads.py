"""tower.core.uploads.check_image bounds an animation's frames × pixels before decoding (issue 17, item 12)."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image, ImageFile

from tower.core.uploads import UploadError, check_image

MAX_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def apng_bytes(width: int, height: int, *, frames: int) -> bytes:
    """A whole, valid animated PNG of blank 1-bit frames: tens of KB on disk however large it decodes."""
    pixels = zlib.compress((b"\0" * (1 + (width + 7) // 8)) * height, 9)
    chunks = [
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)),
        _chunk(b"acTL", struct.pack(">II", frames, 0)),
    ]
    sequence = 0
    for index in range(frames):
        chunks.append(_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 10, 0, 0)))
        sequence += 1
        if index == 0:
            chunks.append(_chunk(b"IDAT", pixels))
        else:
            chunks.append(_chunk(b"fdAT", struct.pack(">I", sequence) + pixels))
            sequence += 1
    chunks.append(_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def test_an_animation_over_the_pixel_bound_in_all_its_frames_is_refused():
    data = apng_bytes(3000, 3000, frames=30)  # each frame is under the bound; the 30 together are not
    assert len(data) < 100_000
    with pytest.raises(UploadError, match="30 frames of 3000×3000"):
        check_image(io.BytesIO(data), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)


def test_the_frames_are_counted_before_any_pixel_is_decoded(monkeypatch):
    def no_decoding(self):  # the refusal must come from the header alone
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UploadError, match="frames"):
        check_image(io.BytesIO(apng_bytes(3000, 3000, frames=30)), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_a_small_animation_is_accepted(fmt):
    frames = [Image.new("RGB", (64, 48), (i * 40, 20, 200)) for i in range(5)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)
    checked = check_image(io.BytesIO(buffer.getvalue()), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    assert (checked.format, checked.width, checked.height) == (fmt, 64, 48)


def test_a_still_image_at_the_bound_is_accepted_and_one_over_is_refused():
    still = io.BytesIO()
    Image.new("L", (100, 100)).save(still, format="PNG")
    assert check_image(io.BytesIO(still.getvalue()), max_bytes=MAX_BYTES, max_pixels=100 * 100).width == 100
    with pytest.raises(UploadError, match="the limit is 9,999"):
        check_image(io.BytesIO(still.getvalue()), max_bytes=MAX_BYTES, max_pixels=100 * 100 - 1)
