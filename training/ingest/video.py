"""Frames for a dataset from a video (no Django): shots by scene detection, the sharpest frames of each.

Shots come from PySceneDetect (``ContentDetector`` on the file, decoded by its PyAV backend); then
one PyAV pass scores every frame's sharpness (variance of the Laplacian on a small grey copy) and
keeps, per shot, the ``per_shot`` sharpest frames in a bounded heap, so memory does not grow with
the video's length.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tower.core.errors import DomainError

SHARPNESS_SIDE = 480


class VideoError(DomainError):
    """The video cannot be read; the message says why."""


@dataclass(frozen=True)
class Frame:
    shot: int  # 0-based
    index: int  # frame number in the video
    seconds: float
    sharpness: float
    png: bytes


@dataclass
class Extraction:
    frames: list[Frame]
    shots: list[tuple[float, float]]  # (start, end) seconds
    duration: float
    decoded: int = 0
    notes: list[str] = field(default_factory=list)


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, low for blur."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def _small_gray(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = SHARPNESS_SIDE / max(h, w)
    if scale < 1:
        rgb = cv2.resize(rgb, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def detect_shots(path: Path) -> list[tuple[float, float]]:
    """(start, end) seconds of each shot; the whole video is one shot when there is no cut."""
    from scenedetect import ContentDetector, detect

    try:
        scenes = detect(str(path), ContentDetector(), start_in_scene=True, backend="pyav")
    except Exception as exc:  # PySceneDetect and PyAV raise a family of their own errors
        raise VideoError(f"the video cannot be read ({exc.__class__.__name__}: {exc})") from None
    return [(float(start.seconds), float(end.seconds)) for start, end in scenes]


def extract_frames(
    path: Path, *, per_shot: int, progress: Callable[[int, int | None], None] | None = None
) -> Extraction:
    """The ``per_shot`` sharpest frames of every shot, as PNG bytes, in time order."""
    import av

    shots = detect_shots(path)
    starts = [start for start, _ in shots] or [0.0]
    heaps: list[list[tuple[float, int, float, np.ndarray]]] = [[] for _ in starts]
    decoded = 0
    duration = 0.0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError("the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = float(stream.average_rate or 25)
            total = stream.frames or (
                int(float(stream.duration * stream.time_base) * rate) if stream.duration and stream.time_base else None
            )
            shot = 0
            for frame in container.decode(stream):
                seconds = float(frame.time) if frame.time is not None else decoded / rate
                # A frame belongs to the last shot starting at or before it (half a frame of slack).
                while shot + 1 < len(starts) and seconds + 0.5 / rate >= starts[shot + 1]:
                    shot += 1
                rgb = frame.to_ndarray(format="rgb24")
                score = sharpness(_small_gray(rgb))
                entry = (score, decoded, seconds, rgb)
                heap = heaps[shot]
                if len(heap) < per_shot:
                    heapq.heappush(heap, entry)
                elif score > heap[0][0]:
                    heapq.heapreplace(heap, entry)
                decoded += 1
                duration = max(duration, seconds + 1 / rate)
                if progress and decoded % 25 == 0:
                    progress(decoded, total)
    except VideoError:
        raise
    except Exception as exc:  # PyAV raises a family of its own errors for broken files
        raise VideoError(f"the video cannot be decoded ({exc.__class__.__name__}: {exc})") from None
    if decoded == 0:
        raise VideoError("the video has no frames")
    if progress:
        progress(decoded, decoded)
    frames = []
    for shot_no, heap in enumerate(heaps):
        for score, index, seconds, rgb in sorted(heap, key=lambda e: e[1]):
            frames.append(Frame(shot=shot_no, index=index, seconds=seconds, sharpness=score, png=_png(rgb)))
    return Extraction(frames=frames, shots=shots or [(0.0, duration)], duration=duration, decoded=decoded)


def _png(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise VideoError("a frame could not be encoded")
    return encoded.tobytes()
