"""Curation writes: approving and rejecting dataset images."""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from characters.models import Character
from generation.models import Asset, AssetKind
from tower.uploads import UploadError, check_image
from training.models import DatasetImage, DatasetSource, RejectionCategory, ReviewStatus


class CurationError(Exception):
    """A curation operation cannot be done as asked."""


@transaction.atomic
def dataset_images_approve(*, image_ids: Iterable[int], reviewer: AbstractBaseUser | None) -> int:
    return DatasetImage.objects.filter(pk__in=list(image_ids)).update(
        status=ReviewStatus.APPROVED,
        rejection_categories=[],
        rejection_note="",
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )


@transaction.atomic
def dataset_images_reject(
    *, image_ids: Iterable[int], categories: list[str], reviewer: AbstractBaseUser | None, note: str = ""
) -> int:
    if not categories:
        raise ValidationError({"categories": "choose at least one rejection category"})
    unknown = set(categories) - set(RejectionCategory.values)
    if unknown:
        raise ValidationError({"categories": f"unknown categories: {', '.join(sorted(unknown))}"})
    if RejectionCategory.OTHER in categories and not note.strip():
        raise ValidationError({"note": "'other' needs a note saying what is wrong"})
    return DatasetImage.objects.filter(pk__in=list(image_ids)).update(
        status=ReviewStatus.REJECTED,
        rejection_categories=sorted(set(categories)),
        rejection_note=note,
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )


@transaction.atomic
def dataset_images_reset(*, image_ids: Iterable[int]) -> int:
    """Back to pending (undo)."""
    return DatasetImage.objects.filter(pk__in=list(image_ids)).update(
        status=ReviewStatus.PENDING, rejection_categories=[], rejection_note="", reviewed_by=None, reviewed_at=None
    )


def dataset_image_add_from_asset(*, asset: Asset, character: Character, user: AbstractBaseUser | None) -> DatasetImage:
    """Put one of Tower's own outputs into a character's dataset, pending review.

    The file is copied (the dataset must outlive the output) and checked by content like any
    upload; the same image twice is refused. The caller has checked that the user may edit the
    project.
    """
    if asset.project_id != character.project_id:
        raise CurationError("that character belongs to another project")
    if asset.kind != AssetKind.IMAGE:
        raise CurationError("only still images can join a training dataset (extract frames from videos first)")
    with asset.file.open("rb") as handle:
        try:
            checked = check_image(handle, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
        except UploadError as exc:
            raise CurationError(f"this output cannot be used: {exc}") from None
    if DatasetImage.objects.filter(character=character, sha256=checked.sha256).exists():
        raise CurationError(f"this image is already in {character.name}'s dataset")
    image = DatasetImage(
        character=character,
        sha256=checked.sha256,
        width=checked.width,
        height=checked.height,
        source=DatasetSource.GENERATED,
        source_ref=f"asset {asset.pk}",
        origin_asset=asset,
        origin_job_id=asset.job_id,
        caption=(asset.job.prompt if asset.job_id else ""),
    )
    stored = None
    try:
        with transaction.atomic():
            image.image.save(checked.storage_name(), ContentFile(checked.data), save=False)
            stored = image.image.name
            image.full_clean(exclude=["image"])
            image.save()
    except BaseException:
        if stored:
            image.image.storage.delete(stored)
        raise
    return image
