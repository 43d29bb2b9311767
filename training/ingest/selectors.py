"""Reads for ingestion pages; access through the project's visibility rule."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from characters.models import Character
from projects.selectors import AnyUser, project_ids_visible_to, project_user_can_write
from tower.core.files import stored_name
from training.ingest.pipeline import thumbnail_name
from training.models import HeldImage, IngestBatch


def batches_visible_to(user: AnyUser) -> QuerySet[IngestBatch]:
    return IngestBatch.objects.filter(project__in=project_ids_visible_to(user)).select_related(
        "project", "character", "created_by"
    )


def batch_get_for_user(*, user: AnyUser, pk: int | str) -> IngestBatch:
    try:
        return batches_visible_to(user).get(pk=pk)
    except (IngestBatch.DoesNotExist, ValueError, TypeError):
        raise Http404("No such ingest batch") from None


def held_images_visible_to(user: AnyUser) -> QuerySet[HeldImage]:
    return HeldImage.objects.filter(batch__project__in=project_ids_visible_to(user)).select_related(
        "batch__project", "character", "duplicate_of"
    )


def held_image_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> HeldImage:
    """The held image, 404 when its project is not visible, 403 (PermissionDenied) when read-only."""
    try:
        held = held_images_visible_to(user).get(pk=pk)
    except (HeldImage.DoesNotExist, ValueError, TypeError):
        raise Http404("No such image") from None
    if write and not project_user_can_write(project=held.batch.project, user=user):
        raise PermissionDenied("read-only access to this project")
    return held


def held_images_for_page(
    *, user: AnyUser, batch: IngestBatch | None = None, project_id: int | None = None, limit: int = 60
) -> dict[str, Any]:
    """Images kept aside, with thumbnail URLs and each project's characters to assign them to."""
    held = held_images_visible_to(user)
    if batch is not None:
        held = held.filter(batch=batch)
    elif project_id is not None:
        held = held.filter(batch__project_id=project_id)
    total = held.count()
    rows = list(held[:limit])
    projects = {row.batch.project_id: row.batch.project for row in rows}
    characters: dict[int, list[Character]] = {}
    for character in Character.objects.filter(project_id__in=projects).order_by("name"):
        characters.setdefault(character.project_id, []).append(character)
    writable = {pk: project_user_can_write(project=project, user=user) for pk, project in projects.items()}
    items = [
        {
            "held": row,
            "thumb_url": row.image.storage.url(thumbnail_name(stored_name(row.image))),
            "characters": characters.get(row.batch.project_id, []),
            "can_write": writable[row.batch.project_id],
        }
        for row in rows
    ]
    return {"items": items, "total": total}
