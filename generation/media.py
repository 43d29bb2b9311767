"""Probing outputs and embedding generation parameters (Django-free).

Images and animations (PNG, APNG, WebP, GIF, JPEG) are read with Pillow; videos (MP4, WebM, MKV,
MOV) with PyAV. Parameters go into PNG ``tEXt`` chunks inserted before ``IEND`` without
re-encoding a pixel, the way ComfyUI stores ``prompt`` and ``workflow``: drop the file back into
ComfyUI and it restores the graph.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from tower.core.errors import DomainError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_MIME = {"PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif", "JPEG": "image/jpeg"}
_IMAGE_EXT = {"PNG": "png", "WEBP": "webp", "GIF": "gif", "JPEG": "jpg"}
_VIDEO_MIME = {"mp4": "video/mp4", "webm": "video/webm", "mkv": "video/x-matroska", "mov": "video/quicktime"}


class MediaError(DomainError):
    """The bytes are not media Tower can store."""


@dataclass(frozen=True)
class MediaInfo:
    kind: str  # image | animation | video
    mime: str
    extension: str
    width: int | None
    height: int | None
    frames: int
    fps: float | None
    duration_seconds: float | None


def probe(data: bytes, *, filename: str = "") -> MediaInfo:
    if not data:
        raise MediaError("empty output")
    try:
        return _probe_image(data)
    except (UnidentifiedImageError, OSError, SyntaxError):
        pass
    return _probe_video(data, filename)


# Animated WebP/GIF/APNG store whole milliseconds per frame, and ComfyUI writes int(1000 / fps):
# 24 fps becomes 41 ms (24.39 fps). The rate that was asked for is the one of these it came from.
STANDARD_RATES = (6, 8, 10, 12, 15, 16, 18, 20, 24, 25, 30, 48, 50, 60)


def animation_fps(durations_ms: list[float]) -> float | None:
    """Frames per second of an animation whose frames last ``durations_ms``."""
    total = sum(durations_ms)
    if not total:
        return None
    if len(set(durations_ms)) == 1:
        step = durations_ms[0]
        for rate in STANDARD_RATES:
            if step in (int(1000 / rate), round(1000 / rate)):
                return float(rate)
    return round(len(durations_ms) / (total / 1000), 3)


def _probe_image(data: bytes) -> MediaInfo:
    with Image.open(io.BytesIO(data)) as image:
        fmt = image.format or ""
        if fmt not in _IMAGE_MIME:
            raise UnidentifiedImageError(fmt)
        frames = getattr(image, "n_frames", 1) or 1
        width, height = image.size
        durations: list[float] = []
        if frames > 1:
            for index in range(frames):
                image.seek(index)
                image.load()  # WebP reports a frame's duration only once it is decoded
                durations.append(float(image.info.get("duration", 0) or 0))
    if frames > 1:
        duration = sum(durations) / 1000 if sum(durations) else None
        fps = animation_fps(durations)
        mime = "image/apng" if fmt == "PNG" else _IMAGE_MIME[fmt]
        return MediaInfo("animation", mime, _IMAGE_EXT[fmt], width, height, frames, fps, duration)
    return MediaInfo("image", _IMAGE_MIME[fmt], _IMAGE_EXT[fmt], width, height, 1, None, None)


def _probe_video(data: bytes, filename: str) -> MediaInfo:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next(iter(container.streams.video), None)
            if stream is None:
                raise MediaError("the file has no video stream")
            frames = stream.frames or sum(1 for _ in container.decode(stream))
            rate = float(stream.average_rate) if stream.average_rate else None
            if stream.duration is not None and stream.time_base is not None:
                duration: float | None = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = frames / rate if rate else None
            names = container.format.name.split(",")
            width, height = stream.codec_context.width, stream.codec_context.height
    except av.FFmpegError as exc:
        raise MediaError(f"not a readable image or video ({exc.__class__.__name__})") from None
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if ext not in _VIDEO_MIME:
        ext = "webm" if "webm" in names else "mkv" if "matroska" in names else "mov" if "mov" in names else "mp4"
    return MediaInfo("video", _VIDEO_MIME[ext], ext, width, height, max(frames, 1), rate, duration)


def png_text_chunks(data: bytes) -> dict[str, str]:
    """The tEXt chunks of a PNG (what ComfyUI writes as ``prompt`` and ``workflow``)."""
    if not data.startswith(PNG_SIGNATURE):
        return {}
    chunks: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"tEXt" and b"\x00" in body:
            key, _, value = body.partition(b"\x00")
            chunks[key.decode("latin-1")] = value.decode("latin-1")
        if ctype == b"IEND":
            break
        pos += 12 + length
    return chunks


def png_add_text(data: bytes, entries: dict[str, Any]) -> bytes:
    """Insert tEXt chunks (values JSON-encoded unless str) before IEND; existing keys are kept."""
    if not data.startswith(PNG_SIGNATURE):
        return data
    existing = png_text_chunks(data)
    new = b""
    for key, value in entries.items():
        if key in existing:
            continue
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
        # tEXt is Latin-1; escape anything else the way JSON does so it survives the round trip.
        payload = key.encode("latin-1") + b"\x00" + text.encode("latin-1", errors="backslashreplace")
        new += struct.pack(">I", len(payload)) + b"tEXt" + payload
        new += struct.pack(">I", zlib.crc32(b"tEXt" + payload) & 0xFFFFFFFF)
    if not new:
        return data
    iend = data.rfind(b"IEND")
    if iend < 4:
        raise MediaError("PNG without an IEND chunk")
    insert_at = iend - 4
    return data[:insert_at] + new + data[insert_at:]
