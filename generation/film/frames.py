"""Frames of stored clips (Django-free): every frame in order, and the last one as PNG.

Videos (MP4, WebM, MKV, MOV) are decoded with PyAV; animated WebP, GIF and APNG with Pillow, which
reads their per-frame disposal and blending correctly (FFmpeg's WebP decoder handles stills only).
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

if TYPE_CHECKING:
    import av

from tower.core.errors import DomainError

MAX_PIXELS = 40_000_000  # per frame, like settings.UPLOAD_MAX_PIXELS


class FrameError(DomainError):
    """The file is not a clip whose frames Tower can read."""


def _is_image(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError):
        return False


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise FrameError(f"{width}×{height} is over {MAX_PIXELS:,} pixels a frame")


def iter_frames(path: str | Path) -> Generator[np.ndarray]:
    """Every frame of an image, animation or video, in order, as H×W×3 uint8 RGB arrays.

    Raises :class:`FrameError` for a missing, empty or unreadable file, or one with no frames.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise FrameError(f"{path.name or path} is missing or empty")
    count = 0
    if _is_image(path):
        frames: Iterator[np.ndarray] = _image_frames(path)
    else:
        frames = _video_frames(path)
    for frame in frames:
        count += 1
        yield frame
    if not count:
        raise FrameError(f"{path.name} has no frames")


def iter_av_frames(path: str | Path) -> Generator[av.VideoFrame]:
    """Every frame of a clip in order as PyAV frames, undecoded further (what an encoder takes as is).

    A video's frames come straight from its decoder (no copy to RGB); an animation's or a still's
    are built from Pillow's RGB frames. Raises :class:`FrameError` like :func:`iter_frames`.
    """
    import av

    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise FrameError(f"{path.name or path} is missing or empty")
    count = 0
    if _is_image(path):
        for array in _image_frames(path):
            count += 1
            yield av.VideoFrame.from_ndarray(array, format="rgb24")
    else:
        try:
            with av.open(str(path), mode="r") as container:
                if not container.streams.video:
                    raise FrameError(f"{path.name} has no video stream")
                stream = container.streams.video[0]
                _check_size(stream.codec_context.width, stream.codec_context.height)
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    count += 1
                    yield frame
        except av.FFmpegError as exc:
            raise FrameError(f"{path.name} is not a video Tower can read ({exc.__class__.__name__})") from None
    if not count:
        raise FrameError(f"{path.name} has no frames")


def _image_frames(path: Path) -> Iterator[np.ndarray]:
    with Image.open(path) as image:
        _check_size(image.width, image.height)  # before decoding a single pixel
        try:
            for index in range(getattr(image, "n_frames", 1) or 1):
                image.seek(index)
                yield np.asarray(image.convert("RGB"))
        except (OSError, ValueError, EOFError) as exc:
            raise FrameError(f"{path.name} is damaged ({exc})") from None


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise FrameError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            _check_size(stream.codec_context.width, stream.codec_context.height)
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as exc:
        raise FrameError(f"{path.name} is not an image or video Tower can read ({exc.__class__.__name__})") from None


def _last_video_frame(path: Path) -> np.ndarray | None:
    """The last frame, decoding only from the last keyframe on (a long clip is not decoded whole)."""
    import av

    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            _check_size(stream.codec_context.width, stream.codec_context.height)
            if stream.duration and stream.time_base:
                # Seek backwards from the end to the keyframe before it, then decode the tail.
                container.seek(int(stream.start_time or 0) + int(stream.duration), backward=True, stream=stream)
            last = None
            for frame in container.decode(stream):
                last = frame
            return last.to_ndarray(format="rgb24") if last is not None else None
    except av.FFmpegError:
        return None


def last_frame(path: str | Path) -> np.ndarray:
    """The last frame of a clip as an H×W×3 uint8 RGB array."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise FrameError(f"{path.name or path} is missing or empty")
    if not _is_image(path):
        tail = _last_video_frame(path)
        if tail is not None:
            return tail
    # iter_frames raises on a clip without frames, so the one-frame window is never empty.
    return deque(iter_frames(path), maxlen=1)[0]


def last_frame_png(path: str | Path) -> bytes:
    """The last frame of a stored clip (MP4, WebM, animated WebP, GIF, APNG, or a still) as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(last_frame(path)).save(buffer, format="PNG")
    return buffer.getvalue()


def first_frame(path: str | Path) -> np.ndarray:
    """The first frame of a clip as an H×W×3 uint8 RGB array."""
    frames = iter_frames(path)
    try:
        return next(frames)
    finally:
        frames.close()
