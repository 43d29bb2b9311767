"""The Ingest page and a batch's page: starting needs edit rights, progress is polled while running."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.factories import CharacterFactory, make_project
from tests.training.ingest.helpers import FakeClassifier, png, texture
from training.ingest import services, tasks
from training.ingest.pipeline import thumbnail_name
from training.models import DatasetImage, IngestBatch, IngestStatus


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _small_images(settings, monkeypatch):
    settings.TOWER_DATASET_MIN_SIDE = 64
    monkeypatch.setattr("training.llm.classify.classify_image", FakeClassifier())


@pytest.fixture
def enqueued(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(services, "enqueue_run", calls.append)
    return calls


@pytest.fixture
def hana(project):
    return CharacterFactory(project=project, name="Hana")


def post_upload(client: Client, project, character=None, **extra):
    data = {
        "project": project.pk,
        "character": character.pk if character else "",
        "files": SimpleUploadedFile("a.png", png(texture(1)), content_type="image/png"),
        "frames_per_shot": 3,
        **extra,
    }
    return client.post(reverse("ingest"), data)


def test_editor_starts_a_batch_and_follows_it_to_the_report(
    member, project, hana, enqueued, django_capture_on_commit_callbacks
):
    client = client_for(member)
    page = client.get(reverse("ingest"))
    assert page.status_code == 200 and "Skyline Academy" in page.text and "Classify automatically" in page.text

    with django_capture_on_commit_callbacks(execute=True):
        response = post_upload(client, project, hana)
    batch = IngestBatch.objects.get()
    assert response.status_code == 302 and response.url == reverse("ingest-batch", args=[batch.pk])
    assert enqueued == [batch.pk] and batch.created_by == member and batch.character == hana

    queued = client.get(response.url)
    assert (
        queued.status_code == 200 and 'hx-trigger="every 1s"' in queued.text and "waiting for a worker" in queued.text
    )

    tasks.ingest_run(batch.pk)
    done = client.get(response.url, headers={"HX-Request": "true"})
    assert done.status_code == 200 and "<html" not in done.text  # the fragment only
    assert "every 1s" not in done.text  # polling stops
    assert 'data-count="added">1<' in done.text and "Succeeded" in done.text
    image = DatasetImage.objects.get()
    assert f'src="/media/{thumbnail_name(image.image.name)}"' in done.text  # the thumbnail, not the full image
    assert f'href="{response.url}"' in client.get(reverse("ingest")).text  # in the recent batches


def test_failed_batch_shows_its_error(member, project, hana, enqueued):
    client = client_for(member)
    post_upload(client, project, hana, files=SimpleUploadedFile("notes.png", b"plain text, not an image"))
    batch = IngestBatch.objects.get()
    tasks.ingest_run(batch.pk)
    page = client.get(reverse("ingest-batch", args=[batch.pk]))
    assert "notes.png" in page.text and "not a readable image" in page.text and "Failed" in page.text
    assert not DatasetImage.objects.exists()


def test_viewer_may_see_but_not_start(viewer, project, hana, enqueued):
    client = client_for(viewer)
    assert client.get(reverse("ingest")).status_code == 200
    assert post_upload(client, project, hana).status_code == 403
    assert not IngestBatch.objects.exists() and enqueued == []


def test_outsider_gets_404_for_start_and_batch(outsider, owner, project, hana, enqueued):
    batch = services.ingest_batch_start(
        project=project, user=owner, character=hana, uploads=[SimpleUploadedFile("a.png", png(texture(1)))]
    )
    client = client_for(outsider)
    assert post_upload(client, project, hana).status_code == 404
    assert client.get(reverse("ingest-batch", args=[batch.pk])).status_code == 404
    listing = client.get(reverse("ingest"))
    assert listing.status_code == 200 and "Skyline Academy" not in listing.text and "No batches yet" in listing.text
    assert IngestBatch.objects.count() == 1


def test_anonymous_is_sent_to_login(client, project):
    response = client.get(reverse("ingest"))
    assert response.status_code == 302 and reverse("login") in response.url


def test_form_errors_change_nothing(member, owner, project, hana, enqueued):
    client = client_for(member)
    neither = client.post(reverse("ingest"), {"project": project.pk, "frames_per_shot": 3})
    assert neither.status_code == 400 and "Choose one source" in neither.text
    stray = CharacterFactory(project=make_project(member, name="Elsewhere"), name="Stray")
    wrong = post_upload(client, project, stray)
    assert wrong.status_code == 400 and "another project" in wrong.text
    too_many = post_upload(client, project, hana, frames_per_shot=99)
    assert too_many.status_code == 400
    assert not IngestBatch.objects.exists() and enqueued == []


def test_comfy_folder_choice_lists_only_allowed_folders(settings, tmp_path, member, project, hana, enqueued):
    allowed = tmp_path / "out"
    allowed.mkdir()
    settings.TOWER_COMFYUI_OUTPUT_DIRS = [str(allowed)]
    client = client_for(member)
    assert str(allowed) in client.get(reverse("ingest")).text
    outside = client.post(
        reverse("ingest"), {"project": project.pk, "character": hana.pk, "folder": "/etc", "frames_per_shot": 3}
    )
    assert outside.status_code == 400 and not IngestBatch.objects.exists()
    tricks = client.post(
        reverse("ingest"),
        {
            "project": project.pk,
            "character": hana.pk,
            "folder": str(allowed),
            "subfolder": "../..",
            "frames_per_shot": 3,
        },
    )
    assert tricks.status_code == 400 and "plain relative path" in tricks.text
    ok = client.post(reverse("ingest"), {"project": project.pk, "folder": str(allowed), "frames_per_shot": 3})
    assert ok.status_code == 302 and IngestBatch.objects.get().status == IngestStatus.QUEUED
