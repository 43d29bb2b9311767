from __future__ import annotations

import hashlib
import itertools

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import CharacterFactory, UserFactory, make_project, png_bytes
from training.models import DatasetImage, LoraModel, RejectionCategory, ReviewStatus, TrainingJob

pytestmark = pytest.mark.django_db

IMAGES = reverse("admin:training_datasetimage_changelist")
_colours = itertools.count(1)


def make_image(character, **fields) -> DatasetImage:
    n = next(_colours)
    data = png_bytes(colour=(n % 256, (n // 256) % 256, 7))
    fields.setdefault("source", "upload")
    image = DatasetImage(character=character, sha256=hashlib.sha256(data).hexdigest(), width=64, height=64, **fields)
    image.image.save(f"{n}.png", ContentFile(data), save=False)
    image.save()
    return image


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def statuses(images) -> list[str]:
    by_pk = dict(DatasetImage.objects.values_list("pk", "status"))
    return [by_pk[i.pk] for i in images]


@pytest.fixture
def character(owner):
    return CharacterFactory(project=make_project(owner), name="Kai")


@pytest.fixture
def images(character):
    return [make_image(character) for _ in range(3)]


def reject(client, images, **data):
    return client.post(
        IMAGES,
        {"action": "reject", "_selected_action": [i.pk for i in images], "apply": "yes", **data},
        follow=True,
    )


# --- Changelist ----------------------------------------------------------------------------------


def test_changelist_queries_do_not_grow_with_rows(admin_client, owner):
    project = make_project(owner)

    def add(n: int) -> None:
        for _ in range(n):
            # Its own character, classification and reviewer each: an N+1 on any of them would show.
            make_image(
                CharacterFactory(project=project),
                classified_character=CharacterFactory(project=project),
                classification_confidence=0.9,
                reviewed_by=UserFactory(),
            )

    add(3)
    with CaptureQueriesContext(connection) as few:
        admin_client.get(IMAGES)
    add(27)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(IMAGES)

    assert len(response.context["cl"].result_list) == 30
    assert len(many.captured_queries) == len(few.captured_queries)


def test_changelist_shows_each_image_as_a_lazy_bounded_thumbnail(admin_client, images):
    html = admin_client.get(IMAGES).content.decode()
    for image in images:
        thumb = reverse("admin:training_datasetimage_thumb", args=[image.pk])
        assert f'<img loading="lazy" src="{thumb}" alt="dataset image {image.pk}"' in html
    assert html.count("max-width:96px;max-height:96px") == len(images)


def test_images_cannot_be_added_and_review_fields_are_read_only(admin_client, images):
    assert admin_client.get(reverse("admin:training_datasetimage_add")).status_code == 403
    form = (
        admin_client.get(reverse("admin:training_datasetimage_change", args=[images[0].pk])).context["adminform"].form
    )
    assert set(form.fields) == {"character", "caption"}


# --- Actions -------------------------------------------------------------------------------------


def test_bulk_approve(admin_client, admin_user, images):
    response = admin_client.post(
        IMAGES, {"action": "approve", "index": 0, "_selected_action": [i.pk for i in images[:2]]}, follow=True
    )

    assert "2 image(s) approved." in messages_of(response)
    assert statuses(images) == [ReviewStatus.APPROVED, ReviewStatus.APPROVED, ReviewStatus.PENDING]
    assert DatasetImage.objects.get(pk=images[0].pk).reviewed_by == admin_user


def test_reject_first_asks_for_categories_and_changes_nothing(admin_client, images):
    response = admin_client.post(IMAGES, {"action": "reject", "index": 0, "_selected_action": [images[0].pk]})

    assert response.status_code == 200
    assert "admin/training/datasetimage/reject_confirmation.html" in [t.name for t in response.templates]
    html = response.content.decode()
    assert f'<img loading="lazy" src="{reverse("admin:training_datasetimage_thumb", args=[images[0].pk])}"' in html
    for value, _label in RejectionCategory.choices:
        assert f'value="{value}"' in html
    assert statuses(images) == [ReviewStatus.PENDING] * 3


def test_reject_with_categories_and_a_note(admin_client, admin_user, images):
    response = reject(
        admin_client,
        images[:2],
        categories=[RejectionCategory.BAD_ANATOMY, RejectionCategory.OTHER],
        note="six fingers",
    )

    assert "2 image(s) rejected (Bad anatomy or hands, Other)." in messages_of(response)
    assert statuses(images) == [ReviewStatus.REJECTED, ReviewStatus.REJECTED, ReviewStatus.PENDING]
    rejected = DatasetImage.objects.get(pk=images[0].pk)
    assert rejected.rejection_categories == ["bad_anatomy", "other"]
    assert rejected.rejection_note == "six fingers"
    assert rejected.reviewed_by == admin_user


def test_reject_without_a_category_changes_nothing(admin_client, images):
    response = reject(admin_client, images, note="meh")

    assert response.status_code == 200
    assert "choose at least one rejection category" in response.context["form"].errors["categories"][0]
    assert statuses(images) == [ReviewStatus.PENDING] * 3


def test_reject_as_other_without_a_note_changes_nothing(admin_client, images):
    response = reject(admin_client, images, categories=[RejectionCategory.OTHER], note="  ")

    assert response.status_code == 200
    assert "'other' needs a note" in response.context["form"].errors["note"][0]
    assert statuses(images) == [ReviewStatus.PENDING] * 3
    # The page keeps the selection, so fixing the form rejects the same images.
    assert response.content.decode().count('name="_selected_action"') == 3


def test_reject_refuses_an_unknown_category(admin_client, images):
    response = reject(admin_client, images, categories=["made_up"])

    assert response.status_code == 200
    assert response.context["form"].errors["categories"]
    assert statuses(images) == [ReviewStatus.PENDING] * 3


def test_reset_to_pending(admin_client, images):
    reject(admin_client, images, categories=[RejectionCategory.DUPLICATE])

    response = admin_client.post(
        IMAGES, {"action": "reset_to_pending", "index": 0, "_selected_action": [images[0].pk]}, follow=True
    )

    assert "1 image(s) back to pending." in messages_of(response)
    assert statuses(images) == [ReviewStatus.PENDING, ReviewStatus.REJECTED, ReviewStatus.REJECTED]
    reset = DatasetImage.objects.get(pk=images[0].pk)
    assert (reset.rejection_categories, reset.reviewed_by) == ([], None)


def test_filter_by_rejection_category(admin_client, images):
    reject(admin_client, images[:1], categories=[RejectionCategory.WRONG_OUTFIT])
    reject(admin_client, images[1:2], categories=[RejectionCategory.ARTIFACTS, RejectionCategory.LOW_QUALITY])

    def shown(category: str) -> set[int]:
        return {i.pk for i in admin_client.get(IMAGES, {"category": category}).context["cl"].result_list}

    assert shown("wrong_outfit") == {images[0].pk}
    assert shown("low_quality") == {images[1].pk}
    assert shown("bad_anatomy") == set()
    assert shown("not-a-category") == {i.pk for i in images}  # an unknown value filters nothing


def test_a_viewer_of_the_project_cannot_approve(viewer, project):
    image = make_image(CharacterFactory(project=project))
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(*Permission.objects.filter(content_type__app_label="training"))
    client = Client()
    client.force_login(viewer)

    response = client.post(IMAGES, {"action": "approve", "index": 0, "_selected_action": [image.pk]}, follow=True)

    assert "0 image(s) approved." in messages_of(response)
    assert any("read-only access" in m for m in messages_of(response))
    image.refresh_from_db()
    assert image.status == ReviewStatus.PENDING


# --- Training runs and LoRAs ---------------------------------------------------------------------


def test_training_progress_is_read_only(admin_client, character):
    run = TrainingJob.objects.create(character=character, step=10, total_steps=100, loss=0.12, log="step 10")
    url = reverse("admin:training_trainingjob_change", args=[run.pk])

    response = admin_client.get(url)
    html = response.content.decode()
    assert "10/100 (10%)" in html
    assert not response.context["adminform"].form.fields

    admin_client.post(url, {"step": 99, "status": "succeeded"})
    run.refresh_from_db()
    assert (run.step, run.status) == (10, "queued")


def test_lora_hash_and_size_are_read_only(admin_client, character):
    lora = LoraModel.objects.create(
        project=character.project, character=character, name="kai.safetensors", sha256="a" * 64, size_bytes=1234
    )
    url = reverse("admin:training_loramodel_change", args=[lora.pk])

    form = admin_client.get(url).context["adminform"].form
    assert {"sha256", "size_bytes", "file", "deployed_at"}.isdisjoint(form.fields)
    assert {"name", "active", "default_strength"} <= set(form.fields)


def test_a_lora_cannot_belong_to_a_character_of_another_project(admin_client, character, owner):
    stranger = CharacterFactory(project=make_project(owner, name="Elsewhere"), name="Mei")

    response = admin_client.post(
        reverse("admin:training_loramodel_add"),
        {
            "project": character.project_id,
            "character": stranger.pk,
            "name": "mei.safetensors",
            "default_strength": "0.8",
        },
    )

    assert response.status_code == 200
    assert "Mei is not a character of" in response.context["adminform"].form.errors["character"][0]
    assert not LoraModel.objects.exists()

    response = admin_client.post(
        reverse("admin:training_loramodel_add"),
        {
            "project": character.project_id,
            "character": character.pk,
            "name": "kai.safetensors",
            "default_strength": "0.8",
        },
    )
    assert response.status_code == 302
    assert LoraModel.objects.get().character == character


# --- Curation feedback, promotion and regeneration -------------------------------------------------


def test_filter_by_classification_disagreement_character_and_source(admin_client, character, images):
    other = CharacterFactory(project=character.project, name="Mei")
    DatasetImage.objects.filter(pk=images[0].pk).update(classified_character=other, classification_confidence=0.8)
    DatasetImage.objects.filter(pk=images[1].pk).update(classified_character=character, source="video_frame")
    frame_of_mei = make_image(other, source="video_frame")

    def shown(**query) -> set[int]:
        return {i.pk for i in admin_client.get(IMAGES, query).context["cl"].result_list}

    assert shown(classified="disagrees") == {images[0].pk}
    assert shown(classified="agrees") == {images[1].pk}
    assert shown(classified="none") == {images[2].pk, frame_of_mei.pk}
    assert shown(source__exact="video_frame") == {images[1].pk, frame_of_mei.pk}
    assert shown(character__id__exact=other.pk) == {frame_of_mei.pk}
    assert shown(status__exact="pending", character__id__exact=character.pk) == {i.pk for i in images}


def test_bulk_reject_feeds_the_learned_negatives_and_reset_takes_them_back(admin_client, character, images):
    reject(admin_client, images[:2], categories=[RejectionCategory.LOW_QUALITY])
    character.refresh_from_db()
    assert character.learned_negatives == {"low quality": 2, "worst quality": 2, "blurry": 2, "out of focus": 2}

    admin_client.post(IMAGES, {"action": "reset_to_pending", "index": 0, "_selected_action": [images[0].pk]})
    character.refresh_from_db()
    assert character.learned_negatives["blurry"] == 1


def test_promote_action_adds_references_and_names_the_refused(admin_client, character, images):
    from characters.models import ReferenceImage

    reject(admin_client, images[2:], categories=[RejectionCategory.ARTIFACTS])
    response = admin_client.post(
        IMAGES, {"action": "promote_to_references", "index": 0, "_selected_action": [i.pk for i in images]}, follow=True
    )

    assert "2 image(s) promoted to references." in messages_of(response)
    assert any(f"#{images[2].pk}: a rejected image cannot become a reference" in m for m in messages_of(response))
    assert set(ReferenceImage.objects.filter(character=character).values_list("sha256", flat=True)) == {
        images[0].sha256,
        images[1].sha256,
    }
    assert statuses(images) == [ReviewStatus.APPROVED, ReviewStatus.APPROVED, ReviewStatus.REJECTED]

    response = admin_client.post(
        IMAGES, {"action": "promote_to_references", "index": 0, "_selected_action": [images[0].pk]}, follow=True
    )
    assert any("this image is already a reference of Kai" in m for m in messages_of(response))
    assert ReferenceImage.objects.filter(character=character).count() == 2


def test_reject_with_regenerate_and_the_regenerate_action(admin_client, owner, character, monkeypatch):
    from generation import tasks
    from generation.models import Job
    from tests.generation.engine_helpers import Enqueued
    from tests.training.test_feedback import generated_image

    monkeypatch.setattr(tasks, "enqueue_run", Enqueued())
    generated = generated_image(character.project, character, owner)
    uploaded = make_image(character)

    response = reject(
        admin_client, [generated, uploaded], categories=[RejectionCategory.OFF_MODEL_COLOURS], regenerate="on"
    )

    child = Job.objects.get(parent=generated.origin_job)
    assert "bad colors" in child.negative_prompt
    assert f"Regenerating with the refined prompt: #{generated.pk} → job {child.pk}." in messages_of(response)
    assert any(f"#{uploaded.pk}: this image was not generated by Tower" in m for m in messages_of(response))

    response = admin_client.post(
        IMAGES, {"action": "regenerate", "index": 0, "_selected_action": [generated.pk]}, follow=True
    )
    assert any(f"already regenerated as job {child.pk}" in m for m in messages_of(response))
    assert Job.objects.filter(parent=generated.origin_job).count() == 1


def test_a_viewer_of_the_project_cannot_promote(viewer, project):
    from characters.models import ReferenceImage

    image = make_image(CharacterFactory(project=project))
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(*Permission.objects.filter(content_type__app_label="training"))
    client = Client()
    client.force_login(viewer)

    response = client.post(
        IMAGES, {"action": "promote_to_references", "index": 0, "_selected_action": [image.pk]}, follow=True
    )

    assert "0 image(s) promoted to references." in messages_of(response)
    assert not ReferenceImage.objects.exists()
