"""Turning images, animations and videos into RGB uint8 frames, with limits on what is accepted."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from quality.metrics.results import EmptyMedia, MediaTooLarge, UnreadableMedia

MAX_PIXELS = 40_000_000  # per frame, like settings.UPLOAD_MAX_PIXELS
MAX_FRAMES = 2_000

FrameLike = Union[np.ndarray, Image.Image]  # noqa: UP007 (used at run time in isinstance checks)
MediaLike = Union[bytes, str, Path, FrameLike, Sequence[FrameLike]]  # noqa: UP007


def as_rgb(frame: FrameLike) -> np.ndarray:
    """One frame as an H×W×3 uint8 array (grey, RGBA and float in [0, 1] are converted)."""
    if isinstance(frame, Image.Image):
        _check_size(frame.width, frame.height)
        return np.asarray(frame.convert("RGB"))
    array = np.asarray(frame)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] == 0 or array.shape[1] == 0:
        raise UnreadableMedia(f"a frame must be H×W×3 (got shape {array.shape})")
    _check_size(array.shape[1], array.shape[0])
    array = array[:, :, :3]
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating):
            array = np.clip(np.rint(array * 255.0), 0, 255)
        array = array.astype(np.uint8)
    return np.ascontiguousarray(array)


def load_frames(media: MediaLike, *, max_frames: int = MAX_FRAMES) -> list[np.ndarray]:
    """All frames of an image, animation or video (bytes, path, PIL image, array or list of frames).

    Raises :class:`EmptyMedia`, :class:`UnreadableMedia` or :class:`MediaTooLarge`; never returns
    an empty list. Frames of different sizes are refused (a clip has one size).
    """
    if isinstance(media, str | Path):
        path = Path(media)
        if not path.is_file():
            raise UnreadableMedia(f"{path} does not exist")
        media = path.read_bytes()
    if isinstance(media, bytes | bytearray):
        frames = _decode(bytes(media), max_frames)
    elif isinstance(media, Image.Image | np.ndarray):
        frames = [as_rgb(media)]
    else:
        if len(media) > max_frames:
            raise MediaTooLarge(f"{len(media)} frames; at most {max_frames} are scored")
        frames = [as_rgb(f) for f in media]
    if not frames:
        raise EmptyMedia("no frames")
    shape = frames[0].shape
    if any(f.shape != shape for f in frames):
        raise UnreadableMedia("frames differ in size")
    return frames


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise MediaTooLarge(f"{width}×{height} is over {MAX_PIXELS:,} pixels a frame")


def _decode(data: bytes, max_frames: int) -> list[np.ndarray]:
    if not data:
        raise EmptyMedia("empty file")
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        return _decode_video(data, max_frames)
    with image:
        _check_size(image.width, image.height)  # before decoding a single pixel
        count = getattr(image, "n_frames", 1) or 1
        if count > max_frames:
            raise MediaTooLarge(f"{count} frames; at most {max_frames} are scored")
        frames = []
        try:
            for index in range(count):
                image.seek(index)
                frames.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError, EOFError) as exc:
            raise UnreadableMedia(f"the image is damaged ({exc})") from None
    return frames


def _decode_video(data: bytes, max_frames: int) -> list[np.ndarray]:
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0] if container.streams.video else None
            if stream is None:
                raise UnreadableMedia("not an image or video Tower can read")
            _check_size(stream.codec_context.width, stream.codec_context.height)
            for frame in container.decode(stream):
                if len(frames) >= max_frames:
                    raise MediaTooLarge(f"more than {max_frames} frames; at most {max_frames} are scored")
                frames.append(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:
        raise UnreadableMedia(f"not an image or video Tower can read ({exc.__class__.__name__})") from None
    return frames
