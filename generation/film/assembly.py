"""Joining clips into one film with chapters (Django-free): scenes (reels) of segments (clips), in order.

A reel's film is its clips one after another. A clip that starts from the previous clip's last frame
(``Clip.continues``: every segment after a scene's first, and a scene's first when it was chained
from the scene before) repeats that frame as its own first one, so that frame is dropped. Within a
reel, ``crossfade_frames`` N blends the last n frames of a clip with the first n of the next
(n = N, or less when a clip is shorter than 2n): the join's seam is softened and the reel is n frames
shorter. Between reels there is a cut (a scene's transition is the story's choice, not the joiner's);
each reel is a chapter ``{"title", "start", "end"}`` in seconds, written into the container and
returned.

**Stream copy** (packets remuxed, nothing decoded or encoded) is chosen exactly when all of these hold,
and otherwise every frame is re-encoded (H.264 yuv420p in MP4, VP9 in WebM), saying why:

1. no clip continues from its predecessor (nothing to drop) — so a reel has one clip, or its joins
   would need a drop — and hence nothing to crossfade;
2. every clip is a video in the container's codec (H.264 for MP4, VP9 for WebM) in yuv420p;
3. all clips share width, height, frame rate and codec extradata (the parameter sets a decoder reads
   once, from the file's header).

Frames are kept one for one: a clip at another rate than the film's (the first clip's) plays at the
film's rate, and one of another size is scaled to the film's size.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from generation.film.frames import FrameError, iter_av_frames
from generation.film.soundtrack import Soundtrack, SoundtrackError
from generation.media import animation_fps
from tower.core.errors import DomainError

if TYPE_CHECKING:
    from av.container.core import Chapter

CONTAINERS = ("mp4", "webm")
MIME = {"mp4": "video/mp4", "webm": "video/webm"}
ENCODER = {"mp4": "libx264", "webm": "libvpx-vp9"}
CODEC = {"mp4": "h264", "webm": "vp9"}  # what a copied clip's stream must already be
# Visually lossless for generated footage at a speed two cores keep well above real time.
ENCODER_OPTIONS = {
    "mp4": {"preset": "fast", "crf": "18"},
    "webm": {"crf": "31", "b": "0", "deadline": "good", "cpu-used": "5", "row-mt": "1"},
}
# MP4's index goes in front of the media, so a browser starts playing before the whole film has loaded.
CONTAINER_OPTIONS = {"mp4": {"movflags": "+faststart"}, "webm": {}}
MAX_CROSSFADE = 120
DEFAULT_FPS = Fraction(24)

Progress = Callable[[float], None]


class AssemblyError(DomainError):
    """The clips cannot be joined into a film (missing, unreadable, none at all, a bad option)."""


@dataclass(frozen=True)
class Clip:
    path: Path
    continues: bool = False  # starts from the previous clip's last frame: its first frame is dropped


@dataclass(frozen=True)
class Reel:
    """A scene: its title (the chapter's) and its clips in order."""

    title: str
    clips: list[Clip]


@dataclass(frozen=True)
class ClipInfo:
    codec: str | None  # the video codec; None for an image or animation
    width: int
    height: int
    fps: Fraction | None
    frames: int
    pix_fmt: str | None
    extradata: bytes | None


@dataclass
class Film:
    container: str
    mime: str
    frames: int
    fps: float
    duration_seconds: float
    width: int
    height: int
    chapters: list[dict[str, Any]]
    stream_copy: bool
    why_encoded: str  # empty for a stream copy
    dropped_frames: int
    crossfaded_joins: int
    soundtrack: bool
    notes: list[str] = field(default_factory=list)


def clip_info(path: Path) -> ClipInfo:
    """What joining needs to know of a clip, without decoding a frame (a video's packets are counted)."""
    if not path.is_file() or path.stat().st_size == 0:
        raise AssemblyError(f"{path.name} is missing or empty")
    try:
        with Image.open(path) as image:
            count = getattr(image, "n_frames", 1) or 1
            durations = []
            for index in range(count if count > 1 else 0):
                image.seek(index)
                image.load()  # WebP reports a frame's duration only once it is decoded
                durations.append(float(image.info.get("duration", 0) or 0))
            rate = animation_fps(durations) if durations else None
            fps = Fraction(rate).limit_denominator(1001) if rate else None
            return ClipInfo(None, image.width, image.height, fps, count, None, None)
    except (UnidentifiedImageError, OSError, SyntaxError):
        pass
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise AssemblyError(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            frames = sum(1 for packet in container.demux(stream) if packet.size)
            context = stream.codec_context
            return ClipInfo(
                context.name,
                context.width,
                context.height,
                Fraction(stream.average_rate) if stream.average_rate else None,
                frames,
                context.format.name if context.format else None,
                bytes(context.extradata) if context.extradata else None,
            )
    except av.FFmpegError as exc:
        raise AssemblyError(f"{path.name} is not a video Tower can read ({exc.__class__.__name__})") from None


def stream_copy_refusal(reels: list[Reel], infos: dict[Path, ClipInfo], *, container: str) -> str:
    """Why the film must be re-encoded (a sentence), or "" when its clips can be copied as they are."""
    clips = [clip for reel in reels for clip in reel.clips]
    if any(clip.continues for clip in clips):
        return "a clip starts from its predecessor's last frame, which is dropped"
    first = infos[clips[0].path]
    for clip in clips:
        info = infos[clip.path]
        if info.codec != CODEC[container] or info.pix_fmt != "yuv420p":
            return f"{clip.path.name} is not {CODEC[container]} yuv420p"
        if (info.width, info.height, info.fps, info.extradata) != (
            first.width,
            first.height,
            first.fps,
            first.extradata,
        ):
            return f"{clip.path.name} differs from the first clip in size, rate or encoder settings"
    return ""


@dataclass
class _Plan:
    """Frame counts decided before a frame is written (the chapters go in the container's header)."""

    fades: list[list[int]]  # per reel, per clip: frames blended with the clip before it (0 for the first)
    reel_frames: list[int]
    dropped: int


def _plan(reels: list[Reel], infos: dict[Path, ClipInfo], crossfade: int) -> _Plan:
    fades: list[list[int]] = []
    reel_frames: list[int] = []
    dropped = 0
    for reel in reels:
        kept = [infos[c.path].frames - (1 if c.continues else 0) for c in reel.clips]
        dropped += sum(1 for c in reel.clips if c.continues)
        for clip, count in zip(reel.clips, kept, strict=True):
            if count < 1:
                raise AssemblyError(f"{clip.path.name} has no frame besides the one it repeats")
        blends = [0] + [min(crossfade, a // 2, b // 2) for a, b in itertools.pairwise(kept)]
        fades.append(blends)
        reel_frames.append(sum(kept) - sum(blends))
    return _Plan(fades, reel_frames, dropped)


def _chapters(reels: list[Reel], reel_frames: list[int], fps: Fraction) -> list[dict[str, Any]]:
    chapters, start = [], 0
    for reel, count in zip(reels, reel_frames, strict=True):
        chapters.append(
            {"title": reel.title, "start": round(float(start / fps), 3), "end": round(float((start + count) / fps), 3)}
        )
        start += count
    return chapters


def _container_chapters(chapters: list[dict[str, Any]]) -> list[Chapter]:
    base = Fraction(1, 1000)
    return [
        {"id": n, "start": round(c["start"] * 1000), "end": round(c["end"] * 1000), "time_base": base,
         "metadata": {"title": c["title"]}}
        for n, c in enumerate(chapters, start=1)
    ]  # fmt: skip


def assemble(
    reels: list[Reel],
    out: Path,
    *,
    container: str = "mp4",
    crossfade_frames: int = 0,
    soundtrack: Path | None = None,
    progress: Progress | None = None,
) -> Film:
    """Write the reels' film to ``out`` and describe it. Raises :class:`AssemblyError`; ``out`` may then
    hold a partial file, which the caller removes."""
    if container not in CONTAINERS:
        raise AssemblyError(f"container must be one of {', '.join(CONTAINERS)}")
    if not 0 <= crossfade_frames <= MAX_CROSSFADE:
        raise AssemblyError(f"crossfade_frames must be between 0 and {MAX_CROSSFADE}")
    reels = [reel for reel in reels if reel.clips]
    if not reels:
        raise AssemblyError("there are no clips to assemble")
    infos = {clip.path: clip_info(clip.path) for reel in reels for clip in reel.clips}
    first = infos[reels[0].clips[0].path]
    # yuv420p halves the colour planes: an odd side loses its last row or column of pixels.
    width, height = first.width - first.width % 2, first.height - first.height % 2
    fps = next((info.fps for info in infos.values() if info.fps), DEFAULT_FPS)
    plan = _plan(reels, infos, crossfade_frames)
    chapters = _chapters(reels, plan.reel_frames, fps)
    total = sum(plan.reel_frames)
    refusal = stream_copy_refusal(reels, infos, container=container)
    report = progress or (lambda fraction: None)
    try:
        with av.open(str(out), mode="w", format=container, options=CONTAINER_OPTIONS[container]) as output:
            output.set_chapters(_container_chapters(chapters))
            if refusal:
                stream = output.add_stream(ENCODER[container], rate=fps, options=ENCODER_OPTIONS[container])
                assert isinstance(stream, av.VideoStream)  # a video encoder's stream
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p"
            else:
                with av.open(str(reels[0].clips[0].path), mode="r") as template:
                    stream = output.add_stream_from_template(template.streams.video[0])
            # The video is the film's first stream, the soundtrack (if any) its second.
            audio = Soundtrack(output, soundtrack, container=container) if soundtrack else None
            try:
                if refusal:
                    written = _encode(output, stream, reels, plan, (width, height), fps, audio, report)
                else:
                    written = _remux(output, stream, reels, infos, fps, audio, report)
                if audio is not None:
                    audio.finish(float(written / fps))
            finally:
                if audio is not None:
                    audio.close()
    except SoundtrackError as exc:
        raise AssemblyError(str(exc)) from None
    except (av.FFmpegError, FrameError) as exc:
        raise AssemblyError(f"the film could not be written ({exc})") from None
    notes = [
        f"{path.name} is {info.fps} fps, played at {fps}"
        for path, info in infos.items()
        if info.fps and info.fps != fps
    ]
    if written != total:
        notes.append(f"{written} frames written where {total} were counted; the chapters follow the count")
    report(1.0)
    return Film(
        container=container,
        mime=MIME[container],
        frames=written,
        fps=float(fps),
        duration_seconds=round(float(written / fps), 3),
        width=width,
        height=height,
        chapters=chapters,
        stream_copy=not refusal,
        why_encoded=refusal,
        dropped_frames=plan.dropped,
        crossfaded_joins=sum(1 for blends in plan.fades for n in blends if n),
        soundtrack=audio is not None,
        notes=notes,
    )


def _reel_frames(reel: Reel, blends: list[int]) -> Iterator[av.VideoFrame | tuple[av.VideoFrame, av.VideoFrame, float]]:
    """A reel's frames in order: a frame, or (outgoing, incoming, weight of incoming) where two blend."""
    held: deque[av.VideoFrame] = deque()
    for index, clip in enumerate(reel.clips):
        frames = iter_av_frames(clip.path)
        if clip.continues:
            next(frames)  # the predecessor's last frame, again
        fade = blends[index]
        for step in range(fade):
            yield (held.popleft(), next(frames), (step + 1) / (fade + 1))
        hold = blends[index + 1] if index + 1 < len(blends) else 0
        for frame in frames:
            held.append(frame)
            if len(held) > hold:
                yield held.popleft()
    yield from held


def _blend(outgoing: av.VideoFrame, incoming: av.VideoFrame, weight: float, size: tuple[int, int]) -> av.VideoFrame:
    a = outgoing.reformat(width=size[0], height=size[1], format="yuv420p").to_ndarray().astype(np.float32)
    b = incoming.reformat(width=size[0], height=size[1], format="yuv420p").to_ndarray().astype(np.float32)
    mixed = np.rint(a * (1.0 - weight) + b * weight).astype(np.uint8)
    return av.VideoFrame.from_ndarray(mixed, format="yuv420p")


def _encode(
    output: Any,
    stream: Any,
    reels: list[Reel],
    plan: _Plan,
    size: tuple[int, int],
    fps: Fraction,
    audio: Soundtrack | None,
    report: Progress,
) -> int:
    time_base = 1 / fps
    total = max(sum(plan.reel_frames), 1)
    written = 0
    for reel, blends in zip(reels, plan.fades, strict=True):
        for item in _reel_frames(reel, blends):
            frame = _blend(*item, size) if isinstance(item, tuple) else item
            if (frame.width, frame.height) != size or frame.format.name != "yuv420p":
                frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
            frame.pts = written
            frame.time_base = time_base
            for packet in stream.encode(frame):
                output.mux(packet)
            written += 1
            if written % 24 == 0:
                report(min(written / total, 0.99))
                if audio is not None:
                    audio.write_until(float(written / fps))
    for packet in stream.encode(None):
        output.mux(packet)
    return written


def _remux(
    output: Any,
    stream: Any,
    reels: list[Reel],
    infos: dict[Path, ClipInfo],
    fps: Fraction,
    audio: Soundtrack | None,
    report: Progress,
) -> int:
    clips = [clip for reel in reels for clip in reel.clips]
    total = max(sum(infos[c.path].frames for c in clips), 1)
    offset = Fraction(0)  # where the clip starts in the film, in seconds
    written = 0
    for clip in clips:
        with av.open(str(clip.path), mode="r") as source:
            video = source.streams.video[0]
            base = video.time_base or Fraction(1, 90_000)  # (a demuxer always sets one)
            start = video.start_time or 0
            shift = round(offset / base) - start
            for packet in source.demux(video):
                if packet.dts is None or not packet.size:
                    continue  # the demuxer's end-of-stream marker
                packet.pts = packet.pts + shift if packet.pts is not None else None
                packet.dts = packet.dts + shift
                packet.stream = stream
                output.mux(packet)
                written += 1
                if written % 48 == 0:
                    report(min(written / total, 0.99))
        offset += infos[clip.path].frames / fps
        if audio is not None:
            audio.write_until(float(offset))
    return written
