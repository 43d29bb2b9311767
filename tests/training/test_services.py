from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from characters.services import character_create
from tests.factories import make_project
from training.models import DatasetImage, ReviewStatus
from training.services import dataset_images_approve, dataset_images_reject, dataset_images_reset


@pytest.fixture
def images(owner):
    character = character_create(project=make_project(owner), name="Kai", design_prompt="x")
    return [
        DatasetImage.objects.create(character=character, image=f"datasets/{i}.png", sha256=f"{i:064x}", source="upload")
        for i in range(3)
    ]


@pytest.mark.django_db
def test_reject_with_categories_then_undo(images, owner):
    ids = [i.pk for i in images[:2]]
    assert dataset_images_reject(image_ids=ids, categories=["bad_anatomy", "artifacts"], reviewer=owner) == 2
    rejected = DatasetImage.objects.get(pk=ids[0])
    assert rejected.status == ReviewStatus.REJECTED
    assert rejected.rejection_categories == ["artifacts", "bad_anatomy"]
    assert rejected.reviewed_by == owner
    dataset_images_reset(image_ids=ids)
    assert set(DatasetImage.objects.values_list("status", flat=True)) == {"pending"}


@pytest.mark.django_db
@pytest.mark.parametrize(("categories", "note"), [([], ""), (["nonsense"], ""), (["other"], "  ")])
def test_bad_rejections_change_nothing(images, owner, categories, note):
    with pytest.raises(ValidationError):
        dataset_images_reject(image_ids=[images[0].pk], categories=categories, reviewer=owner, note=note)
    assert DatasetImage.objects.get(pk=images[0].pk).status == "pending"


@pytest.mark.django_db
def test_approve_clears_an_earlier_rejection(images, owner):
    dataset_images_reject(image_ids=[images[0].pk], categories=["other"], note="eyes", reviewer=owner)
    dataset_images_approve(image_ids=[images[0].pk], reviewer=owner)
    image = DatasetImage.objects.get(pk=images[0].pk)
    assert (image.status, image.rejection_categories, image.rejection_note) == ("approved", [], "")


@pytest.mark.django_db
def test_bulk_rejection_teaches_each_images_own_character(images, owner):
    from characters.models import Character

    mei = character_create(project=images[0].character.project, name="Mei", design_prompt="x")
    theirs = DatasetImage.objects.create(character=mei, image="datasets/m.png", sha256="f" * 64, source="upload")
    ids = [images[0].pk, images[1].pk, theirs.pk]
    dataset_images_reject(image_ids=ids, categories=["wrong_outfit"], reviewer=owner)

    assert Character.objects.get(pk=images[0].character_id).learned_negatives["mismatched clothing"] == 2
    assert Character.objects.get(pk=mei.pk).learned_negatives["mismatched clothing"] == 1


@pytest.mark.django_db
def test_restore_puts_back_an_earlier_rejection_and_its_terms(images, owner):
    from training.services import dataset_image_restore, review_state

    dataset_images_reject(image_ids=[images[0].pk], categories=["style_mismatch"], reviewer=owner)
    image = DatasetImage.objects.get(pk=images[0].pk)
    before, learned_before = review_state(image), dict(image.character.__class__.objects.get().learned_negatives)

    dataset_images_approve(image_ids=[image.pk], reviewer=owner)
    assert image.character.__class__.objects.get().learned_negatives == {}

    restored = dataset_image_restore(image_id=image.pk, state=before)
    assert (restored.status, restored.rejection_categories) == ("rejected", ["style_mismatch"])
    assert restored.reviewed_by == owner
    assert restored.reviewed_at == image.reviewed_at
    assert (
        image.character.__class__.objects.get().learned_negatives
        == learned_before
        == {
            "3d": 1,
            "realistic": 1,
            "photorealistic": 1,
            "western cartoon": 1,
        }
    )
