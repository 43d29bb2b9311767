"""Ingestion through the task: videos (the sharpest frames of each shot) and URLs downloaded by yt-dlp."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.http_files import FileServer
from tests.training.ingest.helpers import (
    BLURRED,
    make_video,
    start_and_run,
    upload,
)
from training.ingest import services
from training.models import DatasetImage, DatasetSource, IngestBatch, IngestStatus


def test_video_upload_keeps_the_sharpest_frames_of_each_shot(tmp_path, project, owner, hana, classifier, enqueued):
    data = make_video(tmp_path / "clip.mp4").read_bytes()
    batch = start_and_run(
        project, owner, character=hana, uploads=[upload("clip.mp4", data, "video/mp4")], frames_per_shot=2
    )
    assert batch.status == IngestStatus.SUCCEEDED, batch.error_message
    assert batch.source == DatasetSource.VIDEO_FRAME
    (video,) = batch.report["videos"]
    assert video["shots"] == 3 and video["frames_decoded"] == 72 and video["frames_kept"] == 6
    assert video["duration_seconds"] == pytest.approx(6.0, abs=0.1)
    # Each shot gives at least one image (the others of a static shot are near-duplicates of it).
    images = list(DatasetImage.objects.filter(ingest_batch=batch))
    assert batch.report["added"] + batch.report["duplicate"] == 6
    shots = {ref.split(" shot ")[1].split(" ")[0] for ref in (i.source_ref for i in images)}
    assert shots == {"1", "2", "3"}
    kept_frames = {int(i.source_ref.split(" frame ")[1].split(" ")[0]) for i in images}
    assert not kept_frames & BLURRED
    assert all(i.source == DatasetSource.VIDEO_FRAME and i.width == 128 for i in images)


def test_unreadable_video_fails_with_a_message(project, owner, hana, classifier, enqueued):
    data = b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100
    batch = start_and_run(project, owner, character=hana, uploads=[upload("clip.mp4", data)])
    assert batch.status == IngestStatus.FAILED and batch.error_message.startswith("clip.mp4: the video cannot be")
    assert not DatasetImage.objects.exists() and batch.source_file.read() == data


# --- URLs (yt-dlp) -------------------------------------------------------------------------------


def test_url_is_downloaded_by_yt_dlp_and_its_frames_added(tmp_path, project, owner, hana, classifier, enqueued):
    clip = make_video(tmp_path / "clip.mp4")
    with FileServer({"/media/clip.mp4": clip}) as server:
        batch = start_and_run(project, owner, character=hana, url=server.url("/media/clip.mp4"), frames_per_shot=1)
    assert batch.status == IngestStatus.SUCCEEDED, batch.error_message
    assert any(method == "GET" and path == "/media/clip.mp4" for method, path, _ in server.requests)
    assert batch.source == DatasetSource.YOUTUBE and batch.report["videos"][0]["shots"] == 3
    assert batch.report["added"] == 3
    assert set(DatasetImage.objects.values_list("source", flat=True)) == {DatasetSource.YOUTUBE}
    assert batch.source_file.read() == clip.read_bytes()  # the download is kept like an upload
    assert not list((Path(batch.source_file.path).parent).glob("download-*"))  # the temp folder is gone


def test_unreachable_url_fails_with_a_clear_message(project, owner, hana, classifier, enqueued):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/clip.mp4"
    batch = start_and_run(project, owner, character=hana, url=url)
    assert batch.status == IngestStatus.FAILED
    assert batch.error_message.startswith(f"could not download {url}") and "refused" in batch.error_message.lower()
    assert not DatasetImage.objects.exists()


def test_url_must_be_http(project, owner, hana, enqueued):
    with pytest.raises(services.IngestError, match="http"):
        services.ingest_batch_start(project=project, user=owner, character=hana, url="file:///etc/passwd")
    assert not IngestBatch.objects.exists() and enqueued == []
