"""Images ingestion does not add are kept aside, said so, and added later without uploading again."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from tests.factories import CharacterFactory
from tests.training.ingest.helpers import make_zip, near_copy, png, texture, upload
from training.ingest import services, tasks
from training.ingest.pipeline import thumbnail_name
from training.models import DatasetImage, HeldImage, HeldReason, IngestBatch, IngestStatus


@pytest.fixture(autouse=True)
def _no_classifier(settings, tmp_path):
    # A fresh install: no vision LLM and no embedding weights on disk.
    settings.TOWER_DATASET_MIN_SIDE = 64
    settings.TOWER_DATASET_PHASH_DISTANCE = 6
    settings.TOWER_LLM_BASE_URL = ""
    settings.MODELS_DIR = tmp_path / "no-models"


@pytest.fixture(autouse=True)
def _enqueued(monkeypatch):
    monkeypatch.setattr(services, "enqueue_run", lambda batch_id: None)


@pytest.fixture
def hana(project):
    return CharacterFactory(project=project, name="Hana")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def run(batch: IngestBatch) -> IngestBatch:
    tasks.ingest_run(batch.pk)
    batch.refresh_from_db()
    return batch


def five_unclassified(project, owner) -> IngestBatch:
    archive = make_zip({f"shot{n}.png": png(texture(n)) for n in range(1, 6)})
    return run(services.ingest_batch_start(project=project, user=owner, uploads=[upload("cast.zip", archive)]))


def test_without_a_classifier_nothing_is_dropped_and_the_batch_is_not_a_success(project, owner, hana):
    batch = five_unclassified(project, owner)

    assert batch.status == IngestStatus.NOTHING_ADDED and batch.get_status_display() == "Nothing added"
    assert "None of 5 images was added" in batch.error_message
    assert "TOWER_LLM_BASE_URL" in batch.error_message and "review page" in batch.error_message
    assert batch.report["added"] == 0 and batch.report["held"] == 5
    held = list(HeldImage.objects.filter(batch=batch))
    assert {h.source_ref for h in held} == {f"cast.zip/shot{n}.png" for n in range(1, 6)}
    assert all(h.reason == HeldReason.UNASSIGNED for h in held)
    assert held[0].image.read() == png(texture(int(held[0].source_ref[-5])))

    page = client_for(owner).get(reverse("ingest-batch", args=[batch.pk]))
    assert "Nothing added" in page.text and "Succeeded" not in page.text
    assert 'class="badge warn"' in page.text and "Assign" in page.text
    listing = client_for(owner).get(reverse("ingest"))
    assert "Nothing added" in listing.text


def test_a_batch_that_added_images_still_succeeds(project, owner, hana):
    batch = run(
        services.ingest_batch_start(
            project=project, user=owner, character=hana, uploads=[upload("a.png", png(texture(1)))]
        )
    )
    assert batch.status == IngestStatus.SUCCEEDED and batch.error_message == ""


def test_an_unassigned_image_is_assigned_from_the_review_page(project, owner, hana, django_capture_on_commit_callbacks):
    batch = five_unclassified(project, owner)
    held = HeldImage.objects.filter(batch=batch).get(source_ref="cast.zip/shot2.png")
    old_name = held.image.name
    storage = held.image.storage

    client = client_for(owner)
    review = client.get(reverse("review"), {"project": project.pk})
    assert review.status_code == 200 and f'data-held="{held.pk}"' in review.text and "Assign" in review.text

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("ingest-held-action", args=[held.pk]),
            {"character": hana.pk, "action": "add", "next": f"{reverse('review')}?project={project.pk}"},
        )
    assert response.status_code == 302 and response["Location"].startswith(reverse("review"))
    image = DatasetImage.objects.get(character=hana)
    assert image.image.read() == png(texture(2)) and image.classification_method == "manual"
    assert image.source_ref == "cast.zip/shot2.png" and image.ingest_batch == batch
    assert image.status == "pending"
    assert storage.exists(thumbnail_name(image.image.name))
    assert not HeldImage.objects.filter(pk=held.pk).exists() and not storage.exists(old_name)
    assert HeldImage.objects.filter(batch=batch).count() == 4


def test_held_images_need_edit_rights(project, owner, viewer, outsider, hana):
    batch = five_unclassified(project, owner)
    held = HeldImage.objects.filter(batch=batch).first()
    url = reverse("ingest-held-action", args=[held.pk])
    assert client_for(viewer).post(url, {"character": hana.pk, "action": "add"}).status_code == 403
    assert client_for(outsider).post(url, {"character": hana.pk, "action": "add"}).status_code == 404
    assert "read-only" in client_for(viewer).get(reverse("ingest-batch", args=[batch.pk])).text
    assert not DatasetImage.objects.exists() and HeldImage.objects.filter(pk=held.pk).exists()


def test_a_character_of_another_project_is_refused(project, owner, hana):
    from tests.factories import make_project

    elsewhere = CharacterFactory(project=make_project(owner, name="Elsewhere"), name="Other")
    batch = five_unclassified(project, owner)
    held = HeldImage.objects.filter(batch=batch).first()
    client_for(owner).post(reverse("ingest-held-action", args=[held.pk]), {"character": elsewhere.pk, "action": "add"})
    assert not DatasetImage.objects.exists() and HeldImage.objects.filter(pk=held.pk).exists()


def test_a_near_duplicate_can_be_kept_anyway(project, owner, hana):
    first = run(
        services.ingest_batch_start(
            project=project, user=owner, character=hana, uploads=[upload("a.png", png(texture(1)))]
        )
    )
    original = DatasetImage.objects.get(ingest_batch=first)
    again = run(
        services.ingest_batch_start(
            project=project, user=owner, character=hana, uploads=[upload("a-brighter.jpg", near_copy(texture(1)))]
        )
    )
    assert again.status == IngestStatus.NOTHING_ADDED and "duplicate" in again.error_message
    held = HeldImage.objects.get(batch=again)
    assert (held.reason, held.character, held.duplicate_of) == (HeldReason.DUPLICATE, hana, original)

    client = client_for(owner)
    assert "Keep anyway" in client.get(reverse("ingest-batch", args=[again.pk])).text
    client.post(reverse("ingest-held-action", args=[held.pk]), {"character": hana.pk, "action": "add"})
    kept = DatasetImage.objects.exclude(pk=original.pk).get(character=hana)
    assert kept.image.read() == near_copy(texture(1)) and not HeldImage.objects.exists()


def test_a_held_image_can_be_discarded(project, owner, hana, django_capture_on_commit_callbacks):
    batch = five_unclassified(project, owner)
    held = HeldImage.objects.filter(batch=batch).first()
    storage, name = held.image.storage, held.image.name
    with django_capture_on_commit_callbacks(execute=True):
        client_for(owner).post(reverse("ingest-held-action", args=[held.pk]), {"action": "discard"})
    assert not HeldImage.objects.filter(pk=held.pk).exists() and not storage.exists(name)
    assert not DatasetImage.objects.exists()


def test_the_ingest_page_says_before_the_upload_when_no_classifier_is_available(project, owner, settings):
    page = client_for(owner).get(reverse("ingest"))
    assert "Automatic classification is not available" in page.text
    assert "TOWER_LLM_BASE_URL" in page.text
    assert page.text.index("Automatic classification is not available") < page.text.index("Start ingest")

    settings.TOWER_LLM_BASE_URL = "http://127.0.0.1:9/v1"
    assert "Automatic classification is not available" not in client_for(owner).get(reverse("ingest")).text


def test_the_admin_lists_held_images_as_thumbnails(admin_client, project, owner, hana):
    batch = five_unclassified(project, owner)
    held = HeldImage.objects.filter(batch=batch).first()
    html = admin_client.get(reverse("admin:training_heldimage_changelist")).content.decode()
    thumb = reverse("admin:training_heldimage_thumb", args=[held.pk])
    assert f'src="{thumb}"' in html and held.image.url not in html
    response = admin_client.get(thumb)
    assert response.status_code == 302 and "/thumbs/" in response["Location"]
