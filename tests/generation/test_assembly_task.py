"""Assembling an episode's film on a worker (generation.assembly_task, wired to quality's segments by
settings.TOWER_EPISODE_FOOTAGE): the film Asset, chapters, soundtrack, progress, stream copy, failure."""

from __future__ import annotations

import hashlib
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from django.core.files.base import ContentFile

from generation import assembly_task as service
from generation.assembly_task import AssemblyError, assembly_run, assembly_start
from generation.models import Assembly, Asset, InputImage
from projects.models import Episode, Project, Scene
from quality.models import SceneRun, Segment, SegmentStatus
from tests.generation.test_assembly_film import numbers, write_tone
from tests.generation.test_media_frames import make_clip, numbered_frame

pytestmark = pytest.mark.django_db


def clip_asset(project: Project, work: Path, name: str, frame_numbers: list[int] | range, **kwargs: Any) -> Asset:
    """A stored video Asset whose frames say their numbers (see test_media_frames)."""
    path = make_clip(work / name, [numbered_frame(n) for n in frame_numbers], **kwargs)
    data = path.read_bytes()
    asset = Asset(
        project=project,
        kind="video",
        mime="video/mp4" if name.endswith(".mp4") else "video/webm",
        size_bytes=len(data),
        frames=len(frame_numbers),
        fps=24.0,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    asset.file.save(name, ContentFile(data), save=True)
    return asset


def frame_image(project: Project, n: int) -> InputImage:
    image = InputImage(project=project, sha256=f"{n:064x}", width=64, height=64)
    image.file.save(f"frame{n}.png", ContentFile(b"png"), save=True)
    return image


def scene_with_segments(
    episode: Episode, number: int, assets: list[Asset], *, title: str = "", first_frame: InputImage | None = None
) -> tuple[Scene, list[Segment]]:
    """A scene with one complete run whose complete segments output ``assets`` in order."""
    scene = Scene.objects.create(episode=episode, number=number, title=title, duration_seconds=1.0)
    run = SceneRun.objects.create(scene=scene, segments_planned=len(assets), status=SegmentStatus.COMPLETE)
    segments = []
    for index, asset in enumerate(assets, start=1):
        segments.append(
            Segment.objects.create(
                run=run,
                scene=scene,
                number=index,
                status=SegmentStatus.COMPLETE,
                output=asset,
                first_frame=first_frame if index == 1 else None,
                last_frame=frame_image(episode.project, 1000 * number + index),
            )
        )
    return scene, segments


@pytest.fixture
def episode(project: Project) -> Episode:
    return Episode.objects.create(project=project, number=1, title="Pilot")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(service.events, "movie_event", lambda kind, **data: sent.append((kind, data)))
    return sent


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    from generation import tasks

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks, "async_task", lambda path, *args, **kw: calls.append((path, *args)))
    return calls


@pytest.fixture
def three_scenes(episode: Episode, tmp_path: Path) -> list[Scene]:
    """The acceptance's shape: 3 scenes × 2 chained segments of 5 frames (each second one repeats a frame)."""
    project = episode.project
    scenes = []
    for number in (1, 2, 3):
        base = 10 * number
        first = clip_asset(project, tmp_path, f"s{number}a.mp4", [n % 12 for n in range(base, base + 5)])
        second = clip_asset(project, tmp_path, f"s{number}b.mp4", [n % 12 for n in range(base + 4, base + 9)])
        scene, _ = scene_with_segments(episode, number, [first, second], title=f"Part {number}")
        scenes.append(scene)
    return scenes


def test_the_worker_stores_the_film_with_its_chapters_and_reports_progress(
    episode, three_scenes, owner, pushed, events, django_capture_on_commit_callbacks, monkeypatch
):
    with django_capture_on_commit_callbacks(execute=True):
        assembly = assembly_start(episode=episode, user=owner)
    assert (assembly.status, assembly.progress) == ("queued", 0.0)
    assert pushed == [("generation.assembly_task.assembly_task", assembly.pk)]

    progress: list[float] = []
    monkeypatch.setattr(service, "PROGRESS_INTERVAL", 0.0)
    original = service._ProgressWriter.__call__

    def spy(self: service._ProgressWriter, fraction: float) -> None:
        original(self, fraction)
        progress.append(Assembly.objects.get(pk=self.assembly.pk).progress)

    monkeypatch.setattr(service._ProgressWriter, "__call__", spy)
    assert service.assembly_task(assembly.pk).startswith("asset ")

    assembly.refresh_from_db()
    film = assembly.asset
    assert assembly.status == "succeeded" and assembly.progress == 1.0 and film is not None
    assert assembly.stream_copy is False and assembly.finished_at is not None
    # 6 segments of 5 frames, the second of each scene starting with the first's last frame: 27.
    assert (film.frames, film.fps, film.kind, film.mime) == (27, 24.0, "video", "video/mp4")
    assert film.duration_seconds == pytest.approx(27 / 24, abs=0.001)
    assert film.project_id == episode.project_id and film.job_id is None
    assert numbers(Path(film.file.path)) == [n % 12 for s in (10, 20, 30) for n in range(s, s + 9)]
    assert [c["title"] for c in assembly.chapters] == ["Part 1", "Part 2", "Part 3"]
    assert [c["start"] for c in assembly.chapters] == [0.0, 0.375, 0.75]
    assert film.metadata["chapters"] == assembly.chapters and film.metadata["dropped_frames"] == 3
    with av.open(film.file.path) as written:
        assert len(written.chapters()) == 3
    assert progress and all(0 <= p < 1 for p in progress) and progress == sorted(progress)
    kind, data = events[-1]
    assert kind == "assembly_complete"
    assert (data["assembly"], data["asset"], data["status"], data["frames"]) == (assembly.pk, film.pk, "succeeded", 27)
    assert data["episode_id"] == episode.pk and data["user_id"] == owner.pk


def test_the_worker_announces_its_progress_live_on_5_percent_steps(
    episode, owner, pushed, events, tmp_path, monkeypatch
):
    # 2 scenes × 2 chained segments of 60 frames (re-encoded: 236 frames, a report every 24).
    for number in (1, 2):
        first = clip_asset(episode.project, tmp_path, f"l{number}a.mp4", [n % 12 for n in range(60)])
        second = clip_asset(episode.project, tmp_path, f"l{number}b.mp4", [n % 12 for n in range(59, 119)])
        scene_with_segments(episode, number, [first, second], title=f"Part {number}")
    assembly = assembly_start(episode=episode, user=owner)
    monkeypatch.setattr(service, "PROGRESS_INTERVAL", 0.0)
    monkeypatch.setattr(service, "PROGRESS_EVENT_INTERVAL", 0.0)  # the step alone decides here
    assert service.assembly_task(assembly.pk).startswith("asset ")

    sent = [data for kind, data in events if kind == "assembly_progress"]
    assert {(d["assembly"], d["status"], d["episode_id"], d["user_id"]) for d in sent} == {
        (assembly.pk, "running", episode.pk, owner.pk)
    }
    values = [d["progress"] for d in sent]
    assert values[0] == 0.0 and len(values) >= 5 and 0.9 <= values[-1] < 1
    assert all(later - earlier >= service.PROGRESS_EVENT_STEP for earlier, later in pairwise(values))
    assert events[-1][0] == "assembly_complete" and events[-1][1]["status"] == "succeeded"


def test_progress_events_are_at_most_two_a_second_and_only_on_5_percent_steps(episode, owner, monkeypatch):
    assembly = Assembly.objects.create(project=episode.project, episode=episode, created_by=owner, status="running")
    sent: list[float] = []
    monkeypatch.setattr(service, "_progress_event", lambda assembly, value: sent.append(value))
    clock = [100.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(service, "PROGRESS_INTERVAL", 0.0)  # every call writes the row: the event throttle alone
    writer = service._ProgressWriter(assembly)  # the claim announced 0 at t=100
    steps = [(0.03, 0.6), (0.1, 0.6), (0.3, 0.1), (0.32, 0.5), (0.34, 0.6), (0.6, 0.6), (0.62, 0.6)]
    for fraction, seconds in steps:
        clock[0] += seconds
        writer(fraction)
    # 0.03, 0.34, 0.62: under 5% after the last one sent; 0.3: 0.1 s after the last one sent.
    assert sent == [0.1, 0.32, 0.6]
    assembly.refresh_from_db()
    assert assembly.progress == 0.62  # the row follows every write


def test_webm_with_crossfade_and_the_soundtrack_muxed(episode, three_scenes, owner, pushed, events, tmp_path):
    music = write_tone(tmp_path / "theme.wav", seconds=5.0)
    episode.soundtrack.save("theme.wav", ContentFile(music.read_bytes()), save=True)

    assembly = assembly_start(episode=episode, user=owner, container="webm", crossfade_frames=1)
    assembly_run(assembly_id=assembly.pk)

    assembly.refresh_from_db()
    film = assembly.asset
    assert film is not None and film.mime == "video/webm" and film.file.name.endswith(".webm")
    assert film.frames == 27 - 3  # one frame blended away at each scene's one segment join
    assert film.metadata["crossfaded_joins"] == 3 and film.metadata["soundtrack"] is True
    with av.open(film.file.path) as written:
        assert written.streams.video[0].codec_context.name == "vp9"
        audio = written.streams.audio[0]
        heard = sum(f.samples for f in written.decode(audio)) / audio.codec_context.sample_rate
    assert heard == pytest.approx(film.duration_seconds, abs=0.03)  # 5 s of music cut to the film


def test_single_clip_scenes_in_one_encoding_are_stream_copied(episode, owner, pushed, events, tmp_path):
    project = episode.project
    for number in (1, 2):
        asset = clip_asset(project, tmp_path, f"only{number}.mp4", range(4 * number, 4 * number + 4))
        scene_with_segments(episode, number, [asset])

    assembly_run(assembly_id=assembly_start(episode=episode, user=owner).pk)

    assembly = Assembly.objects.get(episode=episode)
    assert assembly.status == "succeeded" and assembly.stream_copy is True
    assert assembly.asset is not None and assembly.asset.frames == 8
    assert numbers(Path(assembly.asset.file.path)) == list(range(4, 12))
    assert [c["title"] for c in assembly.chapters] == ["Scene 1", "Scene 2"]  # untitled scenes by number


def test_a_scene_chained_from_the_one_before_drops_its_repeated_first_frame(episode, owner, pushed, events, tmp_path):
    project = episode.project
    first = clip_asset(project, tmp_path, "a.mp4", range(0, 4))
    _, segments = scene_with_segments(episode, 1, [first])
    second = clip_asset(project, tmp_path, "b.mp4", range(3, 7))
    scene_with_segments(episode, 2, [second], first_frame=segments[-1].last_frame)

    assembly_run(assembly_id=assembly_start(episode=episode, user=owner).pk)

    assembly = Assembly.objects.get(episode=episode)
    assert assembly.stream_copy is False and assembly.asset is not None
    assert numbers(Path(assembly.asset.file.path)) == list(range(7))
    assert assembly.chapters[1]["start"] == round(4 / 24, 3)


def test_an_episode_without_scenes_or_without_generated_segments_is_refused(episode, owner, pushed, tmp_path):
    with pytest.raises(AssemblyError, match="no scenes"):
        assembly_start(episode=episode, user=owner)
    Scene.objects.create(episode=episode, number=1, title="Dawn")
    with pytest.raises(AssemblyError, match="no scene of the episode has complete segments"):
        assembly_start(episode=episode, user=owner)
    asset = clip_asset(episode.project, tmp_path, "x.mp4", range(3))
    scene_with_segments(episode, 2, [asset], title="Dusk")
    with pytest.raises(AssemblyError, match="Dawn"):
        assembly_start(episode=episode, user=owner)
    assert not Assembly.objects.exists() and pushed == []


def test_a_failure_is_recorded_and_leaves_no_asset_or_file(episode, three_scenes, owner, pushed, events, settings):
    assembly = assembly_start(episode=episode, user=owner)
    broken = Segment.objects.filter(scene=three_scenes[1]).order_by("number").last()
    assert broken is not None and broken.output is not None
    Path(broken.output.file.path).write_bytes(b"\x00" * 64)  # the stored clip was damaged since
    before = set(Path(settings.MEDIA_ROOT).rglob("*"))

    assert assembly_run(assembly_id=assembly.pk).startswith("failed")

    assembly.refresh_from_db()
    assert assembly.status == "failed" and assembly.asset is None and assembly.finished_at is not None
    assert broken.output.file.name.rsplit("/", 1)[-1] in assembly.error_message
    assert not Asset.objects.filter(metadata__assembly=assembly.pk).exists()
    assert set(Path(settings.MEDIA_ROOT).rglob("*")) == before
    assert events[-1][0] == "assembly_complete" and events[-1][1]["status"] == "failed"


def test_a_redelivered_task_does_nothing_twice(episode, three_scenes, owner, pushed, events):
    assembly = assembly_start(episode=episode, user=owner)
    assembly_run(assembly_id=assembly.pk)
    assert assembly_run(assembly_id=assembly.pk).startswith("not queued")
    assert Asset.objects.filter(kind="video", job__isnull=True, metadata__assembly=assembly.pk).count() == 1


def test_an_assembly_whose_worker_died_is_taken_over(episode, three_scenes, owner, pushed, events):
    from datetime import timedelta

    from django.utils import timezone

    assembly = assembly_start(episode=episode, user=owner)
    Assembly.objects.filter(pk=assembly.pk).update(status="running", started_at=timezone.now() - timedelta(hours=3))
    assembly_run(assembly_id=assembly.pk)
    assembly.refresh_from_db()
    assert assembly.status == "succeeded"


def test_bad_options_are_refused_before_anything_is_queued(episode, three_scenes, owner, pushed):
    for kwargs in ({"container": "avi"}, {"crossfade_frames": -2}, {"crossfade_frames": 10_000}):
        with pytest.raises(AssemblyError):
            assembly_start(episode=episode, user=owner, **kwargs)  # type: ignore[arg-type]
    assert not Assembly.objects.exists()


def test_numbered_frames_survive_h264(tmp_path):
    # The helpers' premise: a flat numbered frame keeps its number through the encoder.
    path = make_clip(tmp_path / "n.mp4", [numbered_frame(n) for n in range(12)])
    assert numbers(path) == list(range(12))
    assert np.asarray(numbered_frame(3)).mean() == 65


def test_an_unreachable_task_queue_fails_the_assembly_saying_so(episode, three_scenes, owner, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    from generation import tasks

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr(tasks, "async_task", refuse)
    assembly = assembly_start(episode=episode, user=owner)
    service._enqueue(assembly.pk)  # what the commit runs
    assembly.refresh_from_db()
    assert assembly.status == "failed" and "task queue could not be reached" in assembly.error_message


def test_reconcile_queues_again_only_assemblies_whose_worker_died(episode, three_scenes, owner, pushed):
    from datetime import timedelta

    from django.utils import timezone

    dead = assembly_start(episode=episode, user=owner)
    alive = assembly_start(episode=episode, user=owner)
    Assembly.objects.filter(pk=dead.pk).update(status="running", started_at=timezone.now() - timedelta(hours=2))
    Assembly.objects.filter(pk=alive.pk).update(status="running", started_at=timezone.now())
    pushed.clear()

    assert service.assemblies_reconcile() == "1 stale assembly queued again"
    assert pushed == [("generation.assembly_task.assembly_task", dead.pk)]
