"""Film assembly benchmark (issue 20 item 7): a 2-minute 512×512 24 fps episode of 12 scenes.

python bench/movie.py [--seconds 120] [--scenes 12] [--pairs 3] [--webm] [--keep]

Makes the segments first (H.264 clips of a panning textured picture, as a segment template would
store them), then times in the same run, in alternating order, ``--pairs`` times each:

- **re-encode**: each scene two chained segments (the second starts from the first's last frame,
  so assembly drops one frame a scene): Tower's ``generation.film.assembly.assemble`` (chapters,
  the MP4 index in front, the progress callback) against a bare PyAV loop that decodes the same
  clips, skips the same frames and encodes the rest with the same encoder and options. Target:
  Tower at ≥ 0.9× the bare loop's speed (median of the pairs' ratios).
- **stream copy**: each scene one clip, all from one encoder: ``assemble`` remuxes the packets.
  Target: ≥ 10× real time (film seconds per wall second).

Reported, no target: the re-encode with a soundtrack of the film's length muxed, and with
``--webm`` a VP9 WebM re-encode against the same bare loop in VP9. Prints one table with the load
average; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation.film.assembly import CONTAINER_OPTIONS, ENCODER, ENCODER_OPTIONS, Clip, Reel, assemble

SIZE = 512
FPS = 24
REENCODE_TARGET = 0.9
COPY_TARGET = 10.0


def texture(seed: int) -> np.ndarray:
    """A smooth coloured picture twice the frame's size, for a camera to pan across."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (SIZE // 16, SIZE // 16, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((32, 32, 1), dtype=np.uint8)).astype(np.float32)
    ramp = np.linspace(0, 60, SIZE * 2, dtype=np.float32)
    big += ramp[None, :, None] + ramp[:, None, None] * 0.5
    # a little grain, as generated footage has: the encoder must work for its bits
    big += rng.normal(0, 4, big.shape).astype(np.float32)
    return np.clip(big, 0, 255).astype(np.uint8)


def write_clip(path: Path, picture: np.ndarray, start: int, count: int) -> None:
    """Frames ``start`` … ``start + count - 1`` of a pan across ``picture`` (2 px right, 1 down a frame)."""
    with av.open(str(path), mode="w") as output:
        stream = output.add_stream("libx264", rate=FPS, options={"preset": "veryfast", "crf": "20"})
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        for t in range(start, start + count):
            x, y = (2 * t) % SIZE, t % SIZE
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[y : y + SIZE, x : x + SIZE]), "rgb24")
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


def make_footage(work: Path, scenes: int, seconds: float) -> tuple[list[Reel], list[Reel]]:
    """(chained reels: two segments a scene, single-clip reels) of ``seconds`` in all."""
    per_scene = round(seconds * FPS / scenes)
    first = per_scene // 2 + 1  # + 1: the second segment repeats its last frame
    chained, single = [], []
    for n in range(scenes):
        picture = texture(n)
        a, b, c = work / f"s{n:02}a.mp4", work / f"s{n:02}b.mp4", work / f"s{n:02}.mp4"
        write_clip(a, picture, 0, first)
        write_clip(b, picture, first - 1, per_scene - first + 1)
        write_clip(c, picture, 0, per_scene)
        chained.append(Reel(f"Scene {n + 1}", [Clip(a), Clip(b, continues=True)]))
        single.append(Reel(f"Scene {n + 1}", [Clip(c)]))
    return chained, single


def write_soundtrack(path: Path, seconds: float) -> Path:
    rate = 44_100
    with av.open(str(path), mode="w") as output:
        stream = output.add_stream("pcm_s16le", rate=rate, layout="stereo")
        t = np.arange(int(seconds * rate)) / rate
        tone = (np.sin(2 * np.pi * 220 * t) * 6000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def bare(reels: list[Reel], out: Path, container: str) -> int:
    """The baseline: decode every clip with PyAV, skip the repeated frames, encode the rest. No more."""
    with av.open(str(out), mode="w") as output:
        stream = output.add_stream(ENCODER[container], rate=Fraction(FPS), options=ENCODER_OPTIONS[container])
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        count = 0
        for reel in reels:
            for clip in reel.clips:
                with av.open(str(clip.path)) as source:
                    video = source.streams.video[0]
                    video.thread_type = "AUTO"
                    for index, frame in enumerate(source.decode(video)):
                        if index == 0 and clip.continues:
                            continue
                        frame.pts, frame.time_base = count, Fraction(1, FPS)
                        output.mux(stream.encode(frame))
                        count += 1
        output.mux(stream.encode(None))
    return count


def timed(run: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    frames = run()
    return time.perf_counter() - started, frames


def cpu_timed(run: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process's threads — the encoder's included —, frames)."""
    cpu = time.process_time()
    seconds, frames = timed(run)
    return seconds, time.process_time() - cpu, frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="film length (default 120)")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=3, help="alternating Tower/bare pairs (default 3)")
    parser.add_argument("--webm", action="store_true", help="also a VP9 WebM row (slow: about 3× the MP4 one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tower-bench-movie-"))
    try:
        started = time.perf_counter()
        chained, single = make_footage(work, args.scenes, args.seconds)
        music = write_soundtrack(work / "music.wav", args.seconds)
        print(f"footage: {args.scenes} scenes, {args.seconds:g} s, made in {time.perf_counter() - started:.1f} s")

        def tower(reels: list[Reel], container: str = "mp4", **kwargs: object) -> Callable[[], int]:
            def run() -> int:
                out = work / f"tower.{container}"
                film = assemble(reels, out, container=container, progress=lambda f: None, **kwargs)  # type: ignore[arg-type]
                return film.frames

            return run

        rows: list[tuple[str, str, str, str, bool | None]] = []
        ratios, tower_times, bare_times, cpu = [], [], [], {"tower": 0.0, "bare": 0.0}
        frames = 0
        for pair in range(args.pairs):
            order = [("tower", tower(chained)), ("bare", lambda: bare(chained, work / "bare.mp4", "mp4"))]
            for name, run in order if pair % 2 == 0 else order[::-1]:
                seconds, used, frames = cpu_timed(run)
                cpu[name] += used
                (tower_times if name == "tower" else bare_times).append(seconds)
            ratios.append(bare_times[-1] / tower_times[-1])
        ratio = statistics.median(ratios)
        cpu_ratio = cpu["bare"] / cpu["tower"]
        rows.append((
            "re-encode H.264 (Tower / bare)",
            f"{statistics.median(tower_times):.2f} s ({frames / statistics.median(tower_times):.0f} fps)",
            f"{statistics.median(bare_times):.2f} s ({frames / statistics.median(bare_times):.0f} fps)",
            f"{ratio:.2f}× (pairs {min(ratios):.2f}–{max(ratios):.2f}), target ≥ {REENCODE_TARGET}×",
            ratio >= REENCODE_TARGET,
        ))  # fmt: skip
        rows.append((
            "re-encode CPU seconds (all pairs)",
            f"{cpu['tower']:.1f} s",
            f"{cpu['bare']:.1f} s",
            f"{cpu_ratio:.2f}× (work done, whatever else runs)",
            None,
        ))  # fmt: skip

        copies = [timed(tower(single)) for _ in range(args.pairs)]
        copy_seconds = statistics.median(s for s, _ in copies)
        speed = args.seconds / copy_seconds
        check = assemble(single, work / "check.mp4")
        rows.append((
            f"stream copy ({args.scenes} single-clip scenes)",
            f"{copy_seconds:.2f} s, {'copied' if check.stream_copy else 'ENCODED: ' + check.why_encoded}",
            f"{statistics.median(bare_times):.2f} s (bare re-encode)",
            f"{speed:.0f}× real time, target ≥ {COPY_TARGET:g}×",
            speed >= COPY_TARGET and check.stream_copy,
        ))  # fmt: skip

        seconds, _ = timed(tower(chained, soundtrack=music))
        rows.append(("re-encode + soundtrack muxed", f"{seconds:.2f} s", "", "reported", None))
        if args.webm:
            t_seconds, webm_frames = timed(tower(chained, "webm"))
            b_seconds, _ = timed(lambda: bare(chained, work / "bare.webm", "webm"))
            rows.append((
                "re-encode VP9 WebM (Tower / bare)",
                f"{t_seconds:.2f} s ({webm_frames / t_seconds:.0f} fps)",
                f"{b_seconds:.2f} s",
                f"{b_seconds / t_seconds:.2f}×",
                None,
            ))  # fmt: skip

        load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
        print(f"\n{frames} frames {SIZE}×{SIZE} at {FPS} fps, {os.cpu_count()} cores, load average {' '.join(load)}")
        print(f"encoder options: {ENCODER_OPTIONS['mp4']}, container options: {CONTAINER_OPTIONS['mp4']}\n")
        print(f"| {'row':<36} | {'Tower':<28} | {'baseline':<26} | {'result':<44} | ok |")
        print(f"|{'-' * 38}|{'-' * 30}|{'-' * 28}|{'-' * 46}|----|")
        for name, mine, theirs, result, ok in rows:
            mark = "–" if ok is None else ("yes" if ok else "NO")
            print(f"| {name:<36} | {mine:<28} | {theirs:<26} | {result:<44} | {mark:<3}|")
        return 0 if all(ok is not False for *_, ok in rows) else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
