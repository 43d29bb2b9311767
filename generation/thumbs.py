"""Thumbnails for the gallery: pure image code (Pillow, PyAV), no Django.

Every thumbnail is a still WebP of at most ``size`` pixels on the long side. An animation
(animated WebP, GIF, APNG) or a video gets its *first frame*: a grid of moving tiles is noisy and
heavy, so the gallery plays the output itself only while the pointer is over its tile.
"""

from __future__ import annotations

import io
from typing import IO

from PIL import Image

from tower.core.errors import DomainError

DEFAULT_SIZE = 320
QUALITY = 78


class ThumbnailError(DomainError):
    """The file could not be read as an image or a video."""


def _fit(frame: Image.Image, size: int) -> Image.Image:
    frame = frame.convert("RGBA" if frame.mode in ("RGBA", "LA", "P", "PA") else "RGB")
    frame.thumbnail((size, size), Image.Resampling.LANCZOS)
    return frame


def _save(frame: Image.Image) -> bytes:
    out = io.BytesIO()
    frame.save(out, format="WEBP", quality=QUALITY, method=4)
    return out.getvalue()


def _stream(source: bytes | IO[bytes]) -> IO[bytes]:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def image_thumbnail(source: bytes | IO[bytes], *, size: int = DEFAULT_SIZE) -> bytes:
    """A still WebP of an image; of an animated one, its first frame (Pillow opens on frame 0)."""
    try:
        with Image.open(_stream(source)) as image:
            image.seek(0)
            return _save(_fit(image, size))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"not a readable image ({exc.__class__.__name__})") from None


def video_thumbnail(source: bytes | IO[bytes], *, size: int = DEFAULT_SIZE) -> bytes:
    """A still WebP of a video's first decoded frame (only the start of the file is read)."""
    import av  # imported here: a still-image gallery never pays for it

    try:
        with av.open(_stream(source), mode="r") as container:
            stream = container.streams.video[0]
            first = next(iter(container.decode(stream)), None)
            image = first.to_image() if first is not None else None
    except Exception as exc:  # PyAV raises a family of its own errors for broken files
        raise ThumbnailError(f"not a readable video ({exc.__class__.__name__})") from None
    if image is None:
        raise ThumbnailError("the video has no frames")
    return _save(_fit(image, size))


def make_thumbnail(source: bytes | IO[bytes], *, mime: str, size: int = DEFAULT_SIZE) -> bytes:
    """A still WebP thumbnail of the image or video in ``source`` (bytes or a seekable binary file)."""
    if mime.startswith("video/"):
        return video_thumbnail(source, size=size)
    return image_thumbnail(source, size=size)
