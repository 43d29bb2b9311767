"""Curation writes: approving and rejecting dataset images (rejections feed the learned negatives)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from characters.models import Character
from generation.models import Asset, AssetKind
from tower.core.errors import DomainError
from tower.core.uploads import UploadError, check_image
from training.models import DatasetImage, DatasetSource, RejectionCategory, ReviewStatus
from training.review.feedback import learned_negatives_add, learned_negatives_remove, terms_for_image


class CurationError(DomainError):
    """A curation operation cannot be done as asked."""


def _review_rows(image_ids: Iterable[int]) -> list[DatasetImage]:
    """The images, locked, with what feedback needs (character and classified character)."""
    return list(
        DatasetImage.objects.select_for_update(of=("self",))
        .select_related("character", "classified_character")
        .filter(pk__in=list(image_ids))
        .order_by("pk")
    )


def _withdraw_feedback(rows: Iterable[DatasetImage]) -> None:
    """Take back what the current rejection of each row taught its character (see feedback)."""
    per_character: dict[int, Counter[str]] = defaultdict(Counter)
    for row in rows:
        if row.status == ReviewStatus.REJECTED:
            per_character[row.character_id].update(terms_for_image(row))
    for character_id in sorted(per_character):
        learned_negatives_remove(character_id=character_id, terms=per_character[character_id])


def _teach_feedback(rows: Iterable[DatasetImage], categories: list[str]) -> None:
    per_character: dict[int, Counter[str]] = defaultdict(Counter)
    for row in rows:
        per_character[row.character_id].update(terms_for_image(row, categories))
    for character_id in sorted(per_character):
        learned_negatives_add(character_id=character_id, terms=per_character[character_id])


def validate_rejection(*, categories: list[str], note: str = "") -> list[str]:
    """The categories, sorted and de-duplicated; ValidationError when the rejection is not valid."""
    if not categories:
        raise ValidationError({"categories": "choose at least one rejection category"})
    unknown = set(categories) - set(RejectionCategory.values)
    if unknown:
        raise ValidationError({"categories": f"unknown categories: {', '.join(sorted(unknown))}"})
    if RejectionCategory.OTHER in categories and not note.strip():
        raise ValidationError({"note": "'other' needs a note saying what is wrong"})
    return sorted(set(categories))


@transaction.atomic
def dataset_images_approve(*, image_ids: Iterable[int], reviewer: User | None) -> int:
    """Approve; an earlier rejection is withdrawn (its learned terms taken back). Approval teaches nothing."""
    rows = _review_rows(image_ids)
    _withdraw_feedback(rows)
    return DatasetImage.objects.filter(pk__in=[r.pk for r in rows]).update(
        status=ReviewStatus.APPROVED,
        rejection_categories=[],
        rejection_note="",
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )


@transaction.atomic
def dataset_images_reject(
    *, image_ids: Iterable[int], categories: list[str], reviewer: User | None, note: str = ""
) -> int:
    """Reject with categories; each image adds its categories' terms (weight 1 each) to its
    character's learned negatives. Re-rejecting an image replaces what its earlier rejection taught."""
    categories = validate_rejection(categories=categories, note=note)
    rows = _review_rows(image_ids)
    _withdraw_feedback(rows)
    _teach_feedback(rows, categories)
    return DatasetImage.objects.filter(pk__in=[r.pk for r in rows]).update(
        status=ReviewStatus.REJECTED,
        rejection_categories=categories,
        rejection_note=note.strip(),
        reviewed_by=reviewer,
        reviewed_at=timezone.now(),
    )


@transaction.atomic
def dataset_images_reset(*, image_ids: Iterable[int]) -> int:
    """Back to pending (undo); a rejection's learned terms are taken back."""
    rows = _review_rows(image_ids)
    _withdraw_feedback(rows)
    return DatasetImage.objects.filter(pk__in=[r.pk for r in rows]).update(
        status=ReviewStatus.PENDING, rejection_categories=[], rejection_note="", reviewed_by=None, reviewed_at=None
    )


@transaction.atomic
def dataset_image_restore(*, image_id: int, state: dict[str, Any]) -> DatasetImage:
    """Put an image back in a recorded review state (the review page's undo).

    ``state`` is what :func:`review_state` returned before the action. The current rejection's
    terms are taken back and the restored rejection's terms taught again, so the learned negatives
    end exactly where they were.
    """
    rows = _review_rows([image_id])
    if not rows:
        raise CurationError("that image no longer exists")
    row = rows[0]
    status = state.get("status")
    if status not in ReviewStatus.values:
        raise CurationError(f"cannot restore an unknown status {status!r}")
    categories = list(state.get("categories") or [])
    _withdraw_feedback([row])
    if status == ReviewStatus.REJECTED:
        _teach_feedback([row], categories)
    reviewed_at = state.get("reviewed_at")
    row.status = status
    row.rejection_categories = categories
    row.rejection_note = state.get("note") or ""
    row.reviewed_by_id = state.get("reviewed_by")
    row.reviewed_at = datetime.fromisoformat(reviewed_at) if reviewed_at else None
    row.save(update_fields=["status", "rejection_categories", "rejection_note", "reviewed_by", "reviewed_at"])
    return row


def review_state(image: DatasetImage) -> dict[str, Any]:
    """The review fields of ``image`` as JSON (kept in the session for undo)."""
    return {
        "status": image.status,
        "categories": list(image.rejection_categories or []),
        "note": image.rejection_note,
        "reviewed_by": image.reviewed_by_id,
        "reviewed_at": image.reviewed_at.isoformat() if image.reviewed_at else None,
    }


def dataset_image_add_from_asset(*, asset: Asset, character: Character, user: User | None) -> DatasetImage:
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
    from training.ingest.dedupe import dataset_duplicate_of
    from training.ingest.imaging import decode_small, phash_of

    duplicate = dataset_duplicate_of(character_id=character.pk, data=checked.data)
    if duplicate is not None:
        other, distance = duplicate
        same = DatasetImage.objects.filter(pk=other, sha256=checked.sha256).exists()
        how = "this image" if same else f"a near-identical image (#{other}, {distance} bits apart)"
        raise CurationError(f"{how} is already in {character.name}'s dataset")
    image = DatasetImage(
        character=character,
        sha256=checked.sha256,
        phash=f"{phash_of(decode_small(checked.data)):016x}",
        width=checked.width,
        height=checked.height,
        source=DatasetSource.GENERATED,
        source_ref=f"asset {asset.pk}",
        origin_asset=asset,
        origin_job_id=asset.job_id,
        caption=(asset.job.prompt if asset.job is not None else ""),
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
