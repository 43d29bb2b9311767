"""An episode's soundtrack muxed beside its film (Django-free): decoded, resampled, trimmed to the film.

The audio is always encoded (AAC in MP4, Opus in WebM): a soundtrack in another codec or at another
rate cannot be copied into either container, and encoding a few minutes of audio costs little next
to the video. It is written in steps as the video advances (:meth:`Soundtrack.write_until`), so the
muxer interleaves the two streams without holding the whole film in memory.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from tower.core.errors import DomainError

RATE = 48_000  # Opus takes nothing else; AAC at 48 kHz is what players expect of video
CODECS = {"mp4": ("aac", "fltp", 1024), "webm": ("libopus", "flt", 960)}


class SoundtrackError(DomainError):
    """The soundtrack cannot be read as audio."""


class Soundtrack:
    """Encodes ``path``'s first audio stream into ``output`` up to a time, and no further."""

    def __init__(self, output: Any, path: str | Path, *, container: str) -> None:
        codec, sample_format, frame_size = CODECS[container]
        try:
            self._input = av.open(str(path), mode="r")
        except av.FFmpegError as exc:
            raise SoundtrackError(f"the soundtrack is not audio Tower can read ({exc.__class__.__name__})") from None
        if not self._input.streams.audio:
            self._input.close()
            raise SoundtrackError("the soundtrack has no audio stream")
        self._source = self._input.streams.audio[0]
        self.stream = output.add_stream(codec, rate=RATE, layout="stereo")
        self._format = sample_format
        self._output = output
        self._resampler = av.AudioResampler(format=sample_format, layout="stereo", rate=RATE, frame_size=frame_size)
        self._decoded = self._input.decode(self._source)
        self._pending: list[av.AudioFrame] = []
        self.samples = 0  # written so far
        self._ended = False

    def _next_frames(self) -> list[av.AudioFrame]:
        try:
            frame = next(self._decoded)
        except StopIteration:
            self._ended = True
            return self._resampler.resample(None)  # what the resampler still holds
        except av.FFmpegError as exc:
            raise SoundtrackError(f"the soundtrack is damaged ({exc.__class__.__name__})") from None
        frame.pts = None  # the resampler restamps; a source's own timestamps may start anywhere
        return self._resampler.resample(frame)

    def write_until(self, seconds: float) -> None:
        """Encode the soundtrack up to ``seconds`` into the film (the last frame cut at that instant)."""
        limit = round(seconds * RATE)
        while self.samples < limit:
            if not self._pending:
                if self._ended:
                    return  # the soundtrack is shorter than the film: silence after it
                self._pending = self._next_frames()
                continue
            frame = self._pending.pop(0)
            room = limit - self.samples
            if frame.samples > room:
                # Cut at the film's end: the remainder waits (a later call may want it).
                data = frame.to_ndarray().astype(np.float32, copy=False)  # flt and fltp both
                cut = room * 2 if self._format == "flt" else room  # packed stereo: 2 values a sample
                head = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(data[:, :cut], dtype=np.float32), format=self._format, layout="stereo"
                )
                tail = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(data[:, cut:], dtype=np.float32), format=self._format, layout="stereo"
                )
                tail.sample_rate = RATE
                self._pending.insert(0, tail)
                frame = head
            frame.sample_rate = RATE
            frame.pts = self.samples
            frame.time_base = Fraction(1, RATE)
            self.samples += frame.samples
            for packet in self.stream.encode(frame):
                self._output.mux(packet)

    def finish(self, seconds: float) -> None:
        """Encode up to the film's end, flush the encoder and close the source."""
        try:
            self.write_until(seconds)
            for packet in self.stream.encode(None):
                self._output.mux(packet)
        finally:
            self._input.close()

    def close(self) -> None:
        self._input.close()
