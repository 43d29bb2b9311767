"""Thumbnails for the gallery: pure image code (Pillow, PyAV), no Django.

A still image becomes a small WebP; an animation (animated WebP, GIF, APNG) or a video becomes a
short, small *animated* WebP of evenly spaced frames, so the grid previews motion without loading
the full file. Output is bounded: at most ``size`` pixels on the long side and ``max_frames``
frames.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

from PIL import Image, ImageSequence

DEFAULT_SIZE = 320
DEFAULT_MAX_FRAMES = 24
QUALITY = 78


class ThumbnailError(Exception):
    """The file could not be read as an image or a video."""


def _fit(frame: Image.Image, size: int) -> Image.Image:
    frame = frame.convert("RGBA" if frame.mode in ("RGBA", "LA", "P") else "RGB")
    frame.thumbnail((size, size), Image.Resampling.LANCZOS)
    return frame


def _spread(items: list[Image.Image], limit: int) -> list[Image.Image]:
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def _save(frames: list[Image.Image], durations: list[int]) -> bytes:
    out = io.BytesIO()
    if len(frames) == 1:
        frames[0].save(out, format="WEBP", quality=QUALITY, method=4)
    else:
        frames[0].save(
            out,
            format="WEBP",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
            quality=QUALITY,
            method=4,
        )
    return out.getvalue()


def image_thumbnail(data: bytes, *, size: int = DEFAULT_SIZE, max_frames: int = DEFAULT_MAX_FRAMES) -> bytes:
    """A WebP of a still or animated image (animated in, animated out)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            count = getattr(image, "n_frames", 1)
            if count <= 1:
                return _save([_fit(image, size)], [])
            step = max(1, count // max_frames)
            frames: list[Image.Image] = []
            durations: list[int] = []
            for index, frame in enumerate(ImageSequence.Iterator(image)):
                if index % step == 0 and len(frames) < max_frames:
                    frames.append(_fit(frame.copy(), size))
                    durations.append(int(frame.info.get("duration", 100) or 100) * step)
            return _save(frames, durations)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ThumbnailError(f"not a readable image ({exc.__class__.__name__})") from None


def _video_frames(data: bytes, *, limit: int, max_seconds: float) -> Iterator[tuple[Image.Image, float]]:
    import av  # imported here: a still-image gallery never pays for it

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or 12)
        for decoded, frame in enumerate(container.decode(stream)):
            seconds = decoded / rate
            if decoded >= limit or seconds > max_seconds:
                return
            yield frame.to_image(), rate


def video_thumbnail(
    data: bytes, *, size: int = DEFAULT_SIZE, max_frames: int = DEFAULT_MAX_FRAMES, max_seconds: float = 4.0
) -> bytes:
    """An animated WebP of the first seconds of a video, at most ``max_frames`` frames."""
    try:
        decoded = list(_video_frames(data, limit=int(max_seconds * 60) + 1, max_seconds=max_seconds))
    except Exception as exc:  # PyAV raises a family of its own errors for broken files
        raise ThumbnailError(f"not a readable video ({exc.__class__.__name__})") from None
    if not decoded:
        raise ThumbnailError("the video has no frames")
    rate = decoded[0][1]
    picked = _spread([image for image, _ in decoded], max_frames)
    per_frame = max(20, int(1000 * len(decoded) / rate / len(picked)))
    return _save([_fit(image, size) for image in picked], [per_frame] * len(picked))


def make_thumbnail(data: bytes, *, mime: str, size: int = DEFAULT_SIZE, max_frames: int = DEFAULT_MAX_FRAMES) -> bytes:
    if mime.startswith("video/"):
        return video_thumbnail(data, size=size, max_frames=max_frames)
    return image_thumbnail(data, size=size, max_frames=max_frames)
