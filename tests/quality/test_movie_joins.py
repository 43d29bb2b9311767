"""Join gates of movie production: real H.264 clips (PyAV) whose join is smooth, cut, or unreadable."""

from __future__ import annotations

import io

import av
import cv2
import numpy as np
import pytest
from django.core.files.base import ContentFile

from generation.models import Asset, AssetKind, InputImage
from projects.models import Episode, Scene
from quality.metrics.temporal import temporal_metrics
from quality.models import JoinEvaluation, JoinKind, SceneRun, Segment
from quality.movie import joins
from quality.movie.joins import join_evaluate, join_metrics

SIZE = 128
STEP = 3  # pixels the camera pans a frame


def texture(seed: int, side: int = 640) -> np.ndarray:
    """A smooth random picture: enough structure for optical flow to follow a pan."""
    noise = np.random.default_rng(seed).random((side, side, 3)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 4)
    return cv2.normalize(blurred, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)


def pan(picture: np.ndarray, start: int, count: int, size: int = SIZE) -> list[np.ndarray]:
    return [
        np.ascontiguousarray(picture[40 : 40 + size, start + i * STEP : start + i * STEP + size]) for i in range(count)
    ]


def mp4(frames: list[np.ndarray], fps: int = 12) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def clip_asset(project, data: bytes, name: str = "segment.mp4") -> Asset:
    return Asset.objects.create(
        project=project, file=ContentFile(data, name=name), kind=AssetKind.VIDEO, mime="video/mp4", sha256="0" * 64
    )


@pytest.fixture
def scene(project) -> Scene:
    episode = Episode.objects.create(project=project, number=1, title="Pilot")
    return Scene.objects.create(episode=episode, number=1, title="Rooftop")


@pytest.fixture
def segment(scene) -> Segment:
    run = SceneRun.objects.create(scene=scene, segments_planned=2)
    return Segment.objects.create(run=run, scene=scene, number=2)


@pytest.fixture
def smooth(project) -> tuple[Asset, Asset]:
    """Two segments of one pan; the second starts from the first's last frame (as the chain makes them)."""
    picture = texture(1)
    return clip_asset(project, mp4(pan(picture, 0, 12))), clip_asset(project, mp4(pan(picture, 11 * STEP, 12)))


def test_a_smooth_join_passes_its_gate_and_the_row_and_segment_say_so(scene, segment, smooth):
    before, after = smooth
    row = join_evaluate(scene=scene, segment=segment, before=before, after=after, kind=JoinKind.SEGMENT, attempt=1)
    assert row.passed is True
    assert row.ssim is not None and row.ssim > 0.8
    assert row.flow_discontinuity is not None and row.flow_discontinuity < 3.0
    assert row.details["ssim_min"] == 0.5 and row.details["flow_max"] == 3.0
    assert row.details["reasons"] == [] and row.details["dropped_first_frame"] is True
    stored = JoinEvaluation.objects.get(pk=row.pk)
    assert (stored.before, stored.after, stored.segment, stored.attempt) == (before, after, segment, 1)
    segment.refresh_from_db()
    assert (segment.join_ssim, segment.join_flow, segment.join_passed) == (row.ssim, row.flow_discontinuity, True)


def test_a_cut_at_the_join_fails_and_says_why(project, scene, segment, smooth):
    before, _ = smooth
    elsewhere = clip_asset(project, mp4(pan(texture(2), 200, 12)))
    row = join_evaluate(scene=scene, segment=segment, before=before, after=elsewhere, kind=JoinKind.SEGMENT, attempt=2)
    assert row.passed is False
    assert row.flow_discontinuity > 3.0
    assert row.details["passed_flow"] is False
    assert any("motion changes" in reason for reason in row.details["reasons"])
    segment.refresh_from_db()
    assert segment.join_passed is False


def test_the_gate_is_the_projects(project, scene, segment, smooth):
    project.join_ssim_min = 0.999
    project.save(update_fields=["join_ssim_min"])
    scene.refresh_from_db()
    before, after = smooth
    row = join_evaluate(scene=scene, segment=segment, before=before, after=after, kind=JoinKind.SEGMENT, attempt=1)
    assert row.passed is False
    assert row.details["passed_ssim"] is False and row.details["passed_flow"] is True
    assert row.details["reasons"] == [f"SSIM across the join {row.ssim:.3f} is below 0.999"]


def test_a_scene_join_keeps_the_first_frame_unless_the_scene_was_chained(project, scene, segment, smooth):
    before, after = smooth
    later = Scene.objects.create(episode=scene.episode, number=2)
    first = Segment.objects.create(run=SceneRun.objects.create(scene=later, segments_planned=1), scene=later, number=1)
    row = join_evaluate(scene=later, segment=first, before=before, after=after, kind=JoinKind.SCENE, attempt=1)
    assert row.details["dropped_first_frame"] is False
    assert row.details["frames_after"] == 6
    # A scene that did not start from the last frame is concatenated whole, so the repeated frame
    # stays: a stop in the pan, which the flow sees.
    assert row.passed is False and row.details["passed_flow"] is False and row.details["passed_ssim"] is True
    # Chained from the scene before (its first frame is that scene's last): the frame shows once.
    last = InputImage.objects.create(project=project, file=ContentFile(b"png", name="last.png"), sha256="1" * 64)
    Segment.objects.filter(pk=segment.pk).update(output=before, last_frame=last)
    first.first_frame = last
    first.save(update_fields=["first_frame"])
    row = join_evaluate(scene=later, segment=first, before=before, after=after, kind=JoinKind.SCENE, attempt=1)
    assert row.details["dropped_first_frame"] is True and row.passed is True


def test_too_few_frames_before_the_join_cannot_be_evaluated(project, scene, segment, smooth):
    _, after = smooth
    short = clip_asset(project, mp4(pan(texture(1), 0, 2)))
    row = join_evaluate(scene=scene, segment=segment, before=short, after=after, kind=JoinKind.SEGMENT, attempt=1)
    assert row.passed is None and row.ssim is None and row.flow_discontinuity is None
    assert "too few frames: 2 before the join (at least 3)" in row.details["reason"]
    segment.refresh_from_db()
    assert segment.join_passed is None


def test_an_unreadable_file_cannot_be_evaluated(project, scene, segment, smooth):
    before, _ = smooth
    broken = clip_asset(project, b"\x00not a video at all" * 10, name="broken.mp4")
    row = join_evaluate(scene=scene, segment=segment, before=before, after=broken, kind=JoinKind.SEGMENT, attempt=1)
    assert row.passed is None
    assert row.details["reason"].startswith("cannot be read: after: asset")


def test_clips_of_different_sizes_cannot_be_evaluated(project, scene, segment, smooth):
    before, _ = smooth
    wider = clip_asset(project, mp4(pan(texture(1), 0, 12, size=160)))
    row = join_evaluate(scene=scene, segment=segment, before=before, after=wider, kind=JoinKind.SEGMENT, attempt=1)
    assert row.passed is None and "differ in size" in row.details["reason"]


def test_the_join_alone_equals_the_clip_metrics_at_the_join():
    picture = texture(3)
    frames = pan(picture, 0, 6) + pan(picture, 90, 6)
    alone = {r.metric: r for r in join_metrics(frames, 6)}
    full = temporal_metrics(frames, models=None, joins=[6])
    for metric in ("join_ssim", "join_flow_discontinuity"):
        assert alone[metric].value == pytest.approx(full[metric].value, abs=1e-9)
        assert alone[metric].details["joins"] == full[metric].details["joins"]


def test_the_verdict_is_announced_to_the_scene(monkeypatch, project, scene, segment, smooth):
    sent = []
    monkeypatch.setattr(joins, "movie_event", lambda event_type, **data: sent.append((event_type, data)))
    before, _ = smooth
    cut = clip_asset(project, mp4(pan(texture(2), 200, 12)))
    row = join_evaluate(scene=scene, segment=segment, before=before, after=cut, kind=JoinKind.SEGMENT, attempt=2)
    [(event_type, data)] = sent
    assert event_type == "join_evaluated" and data["kind"] == "segment"
    assert (data["project_id"], data["episode_id"], data["scene_id"]) == (project.pk, scene.episode_id, scene.pk)
    assert (data["join"], data["segment"], data["number"], data["attempt"]) == (row.pk, segment.pk, 2, 2)
    assert data["passed"] is False and data["reasons"] == row.details["reasons"]
