"""generation.film.assembly: clips joined into a film — the repeated first frame of a chained clip
dropped, crossfades, chapters, the soundtrack, and when the video is copied rather than re-encoded."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from generation.film.assembly import AssemblyError, Clip, Reel, assemble
from generation.film.frames import iter_frames
from tests.generation.test_media_frames import frame_number, make_clip, numbered_frame


def clip(tmp: Path, name: str, numbers: range | list[int], **kwargs: object) -> Path:
    return make_clip(tmp / name, [numbered_frame(n) for n in numbers], **kwargs)  # type: ignore[arg-type]


def write_tone(path: Path, seconds: float, rate: int = 44_100) -> Path:
    with av.open(str(path), mode="w") as output:
        stream = output.add_stream("pcm_s16le", rate=rate, layout="mono")
        t = np.arange(int(seconds * rate)) / rate
        frame = av.AudioFrame.from_ndarray(
            (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            output.mux(packet)
    return path


def numbers(path: Path) -> list[int]:
    return [frame_number(f) for f in iter_frames(path)]


@pytest.fixture
def chained(tmp_path: Path) -> list[Reel]:
    # Scene 1: two segments, the second starting from the first's last frame (4); scene 2: one clip.
    first = clip(tmp_path, "s1-1.mp4", range(0, 5))
    second = clip(tmp_path, "s1-2.mp4", range(4, 9))
    third = clip(tmp_path, "s2-1.mp4", range(0, 6))
    return [Reel("Arrival", [Clip(first), Clip(second, continues=True)]), Reel("Storm", [Clip(third)])]


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_duplicated_first_frames_are_dropped_and_each_scene_is_a_chapter(
    tmp_path: Path, chained: list[Reel], container: str
) -> None:
    out = tmp_path / f"film.{container}"
    seen: list[float] = []
    film = assemble(chained, out, container=container, progress=seen.append)

    assert numbers(out) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5]
    assert film.frames == 5 + 5 + 6 - 1 and film.dropped_frames == 1
    assert film.stream_copy is False and "last frame" in film.why_encoded
    assert film.fps == 24 and film.duration_seconds == pytest.approx(15 / 24, abs=0.001)
    assert film.mime == f"video/{container}"
    assert film.chapters == [
        {"title": "Arrival", "start": 0.0, "end": round(9 / 24, 3)},
        {"title": "Storm", "start": round(9 / 24, 3), "end": round(15 / 24, 3)},
    ]
    with av.open(str(out)) as written:
        assert written.streams.video[0].codec_context.name == ("h264" if container == "mp4" else "vp9")
        assert written.streams.video[0].codec_context.format.name == "yuv420p"
        marks = [(c["metadata"]["title"], float(c["start"] * c["time_base"])) for c in written.chapters()]
    assert marks == [("Arrival", 0.0), ("Storm", pytest.approx(9 / 24, abs=0.002))]
    assert seen[-1] == 1.0


def test_a_crossfade_blends_n_frames_at_each_segment_join(tmp_path: Path) -> None:
    a = clip(tmp_path, "a.mp4", range(0, 9))
    b = clip(tmp_path, "b.mp4", range(8, 12))  # 3 new frames after the dropped 8: the fade is bounded to 1
    c = clip(tmp_path, "c.mp4", [11, 0, 0, 0, 0, 0, 0])
    film = assemble([Reel("One", [Clip(a), Clip(b, True), Clip(c, True)])], tmp_path / "f.mp4", crossfade_frames=2)

    got = numbers(tmp_path / "f.mp4")
    # a's last frame (8) and b's first new frame (9) blend at 1/2: 8.5; b's 11 and c's 0 at 1/2: 5.5.
    assert film.frames == len(got) == 9 + 3 + 6 - 1 - 1
    assert film.crossfaded_joins == 2 and film.dropped_frames == 2
    assert got[:8] == list(range(8))
    assert got[8] in (8, 9)  # the blend of 8 and 9, not a copy of either's neighbour
    assert got[9] == 10  # b's middle frame, untouched
    assert got[10] in (5, 6)  # halfway between 11 and 0
    assert got[11:] == [0] * 5


def test_crossfade_does_not_cross_scene_cuts(tmp_path: Path) -> None:
    a = clip(tmp_path, "a.mp4", range(0, 6))
    b = clip(tmp_path, "b.mp4", range(6, 12))
    film = assemble([Reel("A", [Clip(a)]), Reel("B", [Clip(b)])], tmp_path / "f.mp4", crossfade_frames=3)
    assert numbers(tmp_path / "f.mp4") == list(range(12))
    assert film.crossfaded_joins == 0
    assert film.stream_copy is True  # nothing to drop, nothing to blend, the same encoder settings


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_soundtrack_is_muxed_and_trimmed_to_the_film(tmp_path: Path, chained: list[Reel], container: str) -> None:
    music = write_tone(tmp_path / "music.wav", seconds=3.0)
    film = assemble(chained, tmp_path / f"f.{container}", container=container, soundtrack=music)

    assert film.soundtrack is True
    with av.open(str(tmp_path / f"f.{container}")) as written:
        assert [s.type for s in written.streams][:2] == ["video", "audio"]  # (MP4 adds a chapter track)
        audio = written.streams.audio[0]
        assert audio.codec_context.name == ("aac" if container == "mp4" else "opus")
        heard = sum(frame.samples for frame in written.decode(audio)) / audio.codec_context.sample_rate
    # 3 s of music, 0.625 s of film: the audio ends with the film (AAC adds its priming frame).
    assert film.duration_seconds - 0.01 <= heard <= film.duration_seconds + 0.05


def test_a_soundtrack_that_is_not_audio_is_refused(tmp_path: Path, chained: list[Reel]) -> None:
    bad = tmp_path / "music.mp3"
    bad.write_bytes(b"no music here" * 50)
    with pytest.raises(AssemblyError, match="soundtrack"):
        assemble(chained, tmp_path / "f.mp4", soundtrack=bad)


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_stream_copy_when_every_clip_matches(tmp_path: Path, container: str) -> None:
    suffix = f".{container}"
    clips = [clip(tmp_path, f"{n}{suffix}", range(3 * n, 3 * n + 3)) for n in range(3)]
    out = tmp_path / f"film{suffix}"
    music = write_tone(tmp_path / "music.wav", seconds=1.0)
    film = assemble([Reel(f"S{n}", [Clip(p)]) for n, p in enumerate(clips)], out, container=container, soundtrack=music)

    assert film.stream_copy is True and film.why_encoded == ""
    assert numbers(out) == list(range(9)) and film.frames == 9
    assert [c["start"] for c in film.chapters] == [0.0, 0.125, 0.25]
    with av.open(str(out)) as written:
        assert len(written.chapters()) == 3 and len(written.streams.audio) == 1


def test_re_encoded_when_clips_differ_or_are_not_in_the_containers_codec(tmp_path: Path) -> None:
    small = clip(tmp_path, "small.mp4", range(0, 3))
    big = make_clip(tmp_path / "big.mp4", [numbered_frame(n, size=96) for n in range(3, 6)])
    film = assemble([Reel("A", [Clip(small)]), Reel("B", [Clip(big)])], tmp_path / "f.mp4")
    assert film.stream_copy is False and "differs" in film.why_encoded
    assert numbers(tmp_path / "f.mp4") == list(range(6)) and (film.width, film.height) == (64, 64)

    h264 = clip(tmp_path, "h.mp4", range(0, 3))
    film = assemble([Reel("A", [Clip(h264)])], tmp_path / "f.webm", container="webm")
    assert film.stream_copy is False and "vp9" in film.why_encoded


def test_animated_webp_and_gif_segments_join_too(tmp_path: Path) -> None:
    webp = clip(tmp_path, "a.webp", range(0, 4))
    gif = clip(tmp_path, "b.gif", range(3, 7))
    film = assemble([Reel("A", [Clip(webp), Clip(gif, continues=True)])], tmp_path / "f.mp4")
    assert numbers(tmp_path / "f.mp4") == list(range(7)) and film.frames == 7 and film.fps == 24


def test_an_odd_sized_clip_is_encoded_at_the_even_size_below(tmp_path: Path) -> None:
    odd = make_clip(tmp_path / "odd.gif", [numbered_frame(n, size=65) for n in range(3)])
    film = assemble([Reel("A", [Clip(odd)])], tmp_path / "f.mp4")
    assert (film.width, film.height, film.frames) == (64, 64, 3)
    assert numbers(tmp_path / "f.mp4") == [0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"container": "avi"}, "container"),
        ({"crossfade_frames": -1}, "crossfade"),
        ({"crossfade_frames": 999}, "crossfade"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, chained: list[Reel], kwargs: dict, message: str) -> None:
    with pytest.raises(AssemblyError, match=message):
        assemble(chained, tmp_path / "f.mp4", **kwargs)
    assert not (tmp_path / "f.mp4").exists()


def test_missing_or_unreadable_clips_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError, match="missing"):
        assemble([Reel("A", [Clip(tmp_path / "gone.mp4")])], tmp_path / "f.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(AssemblyError, match=r"junk\.mp4"):
        assemble([Reel("A", [Clip(junk)])], tmp_path / "f.mp4")
    with pytest.raises(AssemblyError, match="no clips"):
        assemble([Reel("A", [])], tmp_path / "f.mp4")
