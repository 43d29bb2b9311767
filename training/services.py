"""Curation writes: approving and rejecting dataset images."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from training.models import DatasetImage, RejectionCategory, ReviewStatus


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
