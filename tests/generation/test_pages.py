"""Generation pages: Generate (preview, pre-flight, submit), jobs and their actions, gallery, thumbnails."""

from __future__ import annotations

import io
import re

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from generation import thumbs
from generation.models import Asset, BackendObjectInfo, Job, JobLogLine, JobStatus
from tests.factories import AssetFactory, BackendFactory, CharacterFactory, JobFactory, make_project, png_bytes
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def form(project, template, **changes) -> dict:
    return {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "seed": "", **changes}


def test_generate_shows_resolved_prompt_and_preflight_then_queues(owner, project, monkeypatch):
    from generation import tasks

    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)
    template = shipped("weightless-image")
    character = CharacterFactory(project=project, trigger_word="kaiSky", design_prompt="1boy")
    backend = BackendFactory()
    BackendObjectInfo.objects.create(backend=backend, data={}, fetched_at=timezone.now())
    client = client_for(owner)

    preview = client.get(
        reverse("generate"), {**form(project, template), "character": character.pk}, HTTP_HX_REQUEST="true"
    )
    html = preview.content.decode()
    assert "<html" not in html
    assert "kaiSky, 1boy" in html
    assert 'data-preflight="fail"' in html and "EmptyImage" in html  # the backend knows no nodes at all

    response = client.post(
        reverse("generate"), {**form(project, template, seed=42, count=2), "character": character.pk}
    )
    jobs = list(Job.objects.order_by("pk"))
    assert [j.seed for j in jobs] == [42, 43] and all(j.character == character for j in jobs)
    # Back to the Generate page with the same choices; its output pane lists the batch.
    assert response.status_code == 302 and response.url.startswith(reverse("generate"))
    assert f"submitted={jobs[0].pk}%2C{jobs[1].pk}" in response.url and "seed=42" in response.url
    html = client.get(response.url).content.decode()
    pane = html[html.index('id="generate-output"') :]
    assert all(f'id="job-row-{job.pk}"' in pane for job in jobs)


def test_forged_ids_change_nothing(owner, outsider, project):
    template = shipped("weightless-image")
    elsewhere = make_project(outsider, name="Elsewhere")
    foreign_character = CharacterFactory(project=elsewhere)
    client = client_for(owner)
    response = client.post(reverse("generate"), {**form(project, template), "character": foreign_character.pk})
    assert response.status_code == 400 and b"Select a valid choice" in response.content
    response = client.post(reverse("generate"), form(elsewhere, template))
    assert response.status_code == 400
    assert not Job.objects.exists()


def test_bad_count_is_shown_inline_and_the_typed_prompt_stays(owner, project):
    template = shipped("weightless-image")
    response = client_for(owner).post(reverse("generate"), form(project, template, count=500, prompt="on the roof"))
    assert response.status_code == 400
    assert b"errorlist" in response.content and b"on the roof" in response.content
    assert not Job.objects.exists()


def test_viewer_cannot_queue(viewer, project):
    template = shipped("weightless-image")
    assert client_for(viewer).post(reverse("generate"), form(project, template)).status_code == 403
    assert not Job.objects.exists()


def test_job_list_filters_and_paginates(owner, project):
    for _ in range(30):
        JobFactory(project=project, status=JobStatus.SUCCEEDED)
    failed = JobFactory(project=project, status=JobStatus.FAILED)
    client = client_for(owner)
    html = client.get(reverse("job-list"), {"status": "failed"}).content.decode()
    assert f'id="job-row-{failed.pk}"' in html and html.count('id="job-row-') == 1
    page_one = client.get(reverse("job-list")).content.decode()
    assert page_one.count('id="job-row-') == 25 and "Page 1 of 2" in page_one and 'id="live-jobs"' in page_one


def test_job_detail_shows_nodes_timeline_error_and_parameters(owner, project):
    job = JobFactory(
        project=project,
        status=JobStatus.FAILED,
        graph={"4": {"class_type": "ImageAddNoise", "inputs": {}, "_meta": {"title": "Grain"}}},
        error_node="#4 ImageAddNoise",
        error_type="RuntimeError",
        error_message="CUDA out of memory",
        params={"steps": 12, "cfg": 7.0},
        finished_at=timezone.now(),
    )
    JobLogLine.objects.create(job=job, message="sent to gpu-1", level="info")
    html = client_for(owner).get(reverse("job-detail", args=[job.pk])).content.decode()
    assert "CUDA out of memory" in html and "#4 ImageAddNoise" in html and "Grain (#4)" in html
    assert "sent to gpu-1" in html and 'data-action="retry"' in html and 'ws-connect="/ws/pages/?job=' in html


def test_running_job_marks_nodes_before_the_current_one_done(owner, project):
    graph = {str(i): {"class_type": "X", "inputs": {}, "_meta": {"title": f"N{i}"}} for i in range(1, 4)}
    job = JobFactory(project=project, status=JobStatus.RUNNING, graph=graph, current_node="N2 (#2)", progress=0.4)
    html = client_for(owner).get(reverse("job-detail", args=[job.pk])).content.decode()
    states = dict(re.findall(r'data-node="(\d+)" data-state="(\w+)"', html))
    assert states == {"1": "done", "2": "running", "3": "waiting"}


def test_a_reload_mid_job_shows_the_live_preview_frame_on_disk(owner, project, settings):
    from pathlib import Path

    running = JobFactory(project=project, status=JobStatus.RUNNING, progress=0.3)
    client = client_for(owner)
    assert "data-preview" not in client.get(reverse("job-detail", args=[running.pk])).content.decode()
    frame = Path(settings.MEDIA_ROOT) / "previews" / f"job-{running.pk}.jpg"
    frame.parent.mkdir(parents=True, exist_ok=True)
    frame.write_bytes(png_bytes(fmt="JPEG"))
    html = client.get(reverse("job-detail", args=[running.pk])).content.decode()
    assert re.search(rf'src="/media/previews/job-{running.pk}\.jpg\?v=\d+"[^>]*data-preview', html)
    # The HTMX resync after a reconnect shows it too; a finished job never does.
    fragment = client.get(reverse("job-detail", args=[running.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert f"previews/job-{running.pk}.jpg" in fragment
    Job.objects.filter(pk=running.pk).update(status=JobStatus.SUCCEEDED, finished_at=timezone.now())
    assert "data-preview" not in client.get(reverse("job-detail", args=[running.pk])).content.decode()


def test_job_page_log_shows_the_newest_lines(owner, project):
    job = JobFactory(project=project, status=JobStatus.RUNNING)
    JobLogLine.objects.bulk_create(JobLogLine(job=job, message=f"line {i:03d}") for i in range(130))
    html = client_for(owner).get(reverse("job-detail", args=[job.pk])).content.decode()
    shown = re.findall(r"line (\d{3})", html)
    assert shown == [f"{i:03d}" for i in range(30, 130)]  # the newest 100, oldest first
    assert "Newest 100 lines." in html


def test_cancel_retry_reproduce_buttons_call_the_services(owner, project, monkeypatch):
    from generation import tasks

    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)
    client = client_for(owner)
    queued = JobFactory(project=project, status=JobStatus.QUEUED, graph={"1": {}})
    assert client.post(reverse("job-action", args=[queued.pk, "cancel"])).status_code == 302
    assert Job.objects.get(pk=queued.pk).status == JobStatus.CANCELLED

    response = client.post(reverse("job-action", args=[queued.pk, "retry"]))
    retry = Job.objects.get(parent=queued)
    assert response.url == reverse("job-detail", args=[retry.pk])

    done = JobFactory(project=project, status=JobStatus.SUCCEEDED, graph={"1": {}})
    client.post(reverse("job-action", args=[done.pk, "reproduce"]))
    assert Job.objects.filter(reproduce_of=done).count() == 1

    again = client.post(reverse("job-action", args=[done.pk, "cancel"]), follow=True)
    assert b"cannot be cancelled" in again.content
    assert client.post(reverse("job-action", args=[done.pk, "explode"])).status_code == 404


def test_outsiders_and_viewers_cannot_touch_jobs(outsider, viewer, project):
    job = JobFactory(project=project, status=JobStatus.QUEUED)
    asset = AssetFactory(project=project, job=job)
    for name, args in (("job-detail", [job.pk]), ("asset-detail", [asset.pk]), ("asset-thumb", [asset.pk])):
        assert client_for(outsider).get(reverse(name, args=args)).status_code == 404
    assert client_for(outsider).post(reverse("job-action", args=[job.pk, "cancel"])).status_code == 404
    assert client_for(viewer).post(reverse("job-action", args=[job.pk, "cancel"])).status_code == 403
    csrf = client_for(project.owner, enforce_csrf_checks=True).post(reverse("job-action", args=[job.pk, "cancel"]))
    assert csrf.status_code == 403
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    gallery = client_for(outsider).get(reverse("gallery")).content.decode()
    assert f'data-asset="{asset.pk}"' not in gallery


def test_gallery_filters_by_project_character_and_kind(owner, project):
    kai = CharacterFactory(project=project)
    other = make_project(owner, name="Other")
    mine = AssetFactory(project=project, job=JobFactory(project=project, character=kai))
    video = AssetFactory(project=project, kind="video", mime="video/webm")
    elsewhere = AssetFactory(project=other)
    client = client_for(owner)
    by_character = client.get(reverse("gallery"), {"character": kai.pk}).content.decode()
    assert f'data-asset="{mine.pk}"' in by_character and f'data-asset="{video.pk}"' not in by_character
    by_kind = client.get(reverse("gallery"), {"kind": "video"}).content.decode()
    assert f'data-asset="{video.pk}"' in by_kind and f'data-asset="{mine.pk}"' not in by_kind
    by_project = client.get(reverse("gallery"), {"project": other.pk}).content.decode()
    assert f'data-asset="{elsewhere.pk}"' in by_project and f'data-asset="{mine.pk}"' not in by_project
    lightbox = client.get(reverse("asset-detail", args=[video.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "<video" in lightbox and "<html" not in lightbox
    # A video cannot join a training dataset as it is; a still image of the character can.
    assert "add-to-dataset" not in lightbox
    still = client.get(reverse("asset-detail", args=[mine.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "add-to-dataset" in still


def test_thumbnail_is_made_once_as_webp_and_then_linked_directly(owner, project, monkeypatch):
    asset = AssetFactory(project=project, file=ContentFile(png_bytes(640, 480), name="big.png"))
    calls = []
    real = thumbs.make_thumbnail

    def counting(data, **kw):
        calls.append(1)
        return real(data, **kw)

    monkeypatch.setattr("generation.services.thumbnails.make_thumbnail", counting)
    client = client_for(owner)
    first = client.get(reverse("asset-thumb", args=[asset.pk]))
    second = client.get(reverse("asset-thumb", args=[asset.pk]))
    assert first.status_code == second.status_code == 302 and first.url == second.url
    assert len(calls) == 1
    asset.refresh_from_db()
    with Image.open(asset.thumbnail.open("rb")) as image:
        assert image.format == "WEBP" and max(image.size) == 320
    gallery = client.get(reverse("gallery")).content.decode()
    assert f'src="{asset.thumbnail.url}"' in gallery and reverse("asset-thumb", args=[asset.pk]) not in gallery


def test_broken_asset_gets_a_placeholder(owner, project):
    asset = AssetFactory(project=project)  # "not-really-png"
    response = client_for(owner).get(reverse("asset-thumb", args=[asset.pk]))
    assert response.status_code == 302 and response.url.endswith("no-thumbnail.svg")
    assert not Asset.objects.get(pk=asset.pk).thumbnail


FIRST = (220, 30, 30)  # the first frame is red, every later one green: a still of frame 0 is red


def _is_first_frame(thumb: bytes, size: tuple[int, int]) -> None:
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "WEBP" and getattr(image, "n_frames", 1) == 1 and image.size == size
        red, green, _ = image.convert("RGB").getpixel((image.width // 2, image.height // 2))
        assert red > 150 and green < 90, (red, green)


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "PNG"])
def test_animated_image_thumbnail_is_a_still_of_its_first_frame(fmt):
    frames = [Image.new("RGB", (200, 100), FIRST if i == 0 else (20, 200, 20 * i)) for i in range(10)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format=fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)
    with Image.open(io.BytesIO(buffer.getvalue())) as source:
        assert source.n_frames == 10  # really animated (APNG for PNG)
    _is_first_frame(thumbs.make_thumbnail(buffer.getvalue(), mime=f"image/{fmt.lower()}", size=64), (64, 32))


def _video(container_format: str, codec: str) -> bytes:
    """Twelve frames at 12 fps: the first red, the rest green."""
    import av

    video = io.BytesIO()
    with av.open(video, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_image(Image.new("RGB", (64, 48), FIRST if i == 0 else (20, 200, 20 * i)))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return video.getvalue()


@pytest.mark.parametrize(
    ("container_format", "codec", "mime"), [("webm", "libvpx", "video/webm"), ("mp4", "h264", "video/mp4")]
)
def test_video_thumbnail_is_a_still_of_its_first_frame(container_format, codec, mime):
    _is_first_frame(thumbs.make_thumbnail(_video(container_format, codec), mime=mime, size=32), (32, 24))


def test_a_video_outputs_stored_thumbnail_is_a_still_of_its_first_frame(owner, project):
    clip = AssetFactory(
        project=project, kind="video", mime="video/mp4", file=ContentFile(_video("mp4", "h264"), name="clip.mp4")
    )
    response = client_for(owner).get(reverse("asset-thumb", args=[clip.pk]))
    clip.refresh_from_db()
    assert response.status_code == 302 and response.url == clip.thumbnail.url
    with clip.thumbnail.open("rb") as handle:
        _is_first_frame(handle.read(), (64, 48))


def test_unreadable_media_has_no_thumbnail():
    with pytest.raises(thumbs.ThumbnailError):
        thumbs.make_thumbnail(b"nope", mime="image/png")
    with pytest.raises(thumbs.ThumbnailError):
        thumbs.make_thumbnail(b"nope", mime="video/mp4")


def test_animated_tiles_carry_the_output_to_play_on_hover_and_stills_do_not(owner, project):
    clip = AssetFactory(project=project, kind="video", mime="video/mp4")
    loop = AssetFactory(project=project, kind="animation", mime="image/webp")
    still = AssetFactory(project=project)
    html = client_for(owner).get(reverse("gallery")).content.decode()
    tiles = {int(pk): body for pk, body in re.findall(r'data-asset="(\d+)"([^>]*)>', html)}
    assert f'data-play="{clip.file.url}" data-play-kind="video"' in tiles[clip.pk]
    assert f'data-play="{loop.file.url}" data-play-kind="image"' in tiles[loop.pk]
    assert "data-play" not in tiles[still.pk]
