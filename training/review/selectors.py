"""Reads for the review page: the queue for a filter, and one image by access."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from characters.models import Character
from characters.selectors import characters_visible_to
from projects.models import Project
from projects.selectors import AnyUser, project_get_for_user, project_ids_visible_to, project_user_can_write
from training.models import DatasetImage, DatasetSource, ReviewStatus


@dataclass(frozen=True)
class ReviewFilter:
    project: Project | None = None
    character: Character | None = None
    source: str = ""
    status: str = ReviewStatus.PENDING

    def as_query(self) -> dict[str, str]:
        query = {"status": self.status}
        if self.project is not None:
            query["project"] = str(self.project.pk)
        if self.character is not None:
            query["character"] = str(self.character.pk)
        if self.source:
            query["source"] = self.source
        return query


def review_filter_from(*, user: AnyUser, data: dict[str, str]) -> ReviewFilter:
    """The filter from a query string (or a POST's hidden fields). A project or character the user
    cannot see is a 404, as everywhere; an unknown source or status falls back to all / pending."""
    project = None
    character = None
    project_id = (data.get("project") or "").strip()
    if project_id:
        project = project_get_for_user(user=user, pk=project_id)
    character_id = (data.get("character") or "").strip()
    if character_id:
        characters = characters_visible_to(user)
        if project is not None:
            characters = characters.filter(project=project)
        character = characters.filter(pk=int(character_id) if character_id.isdigit() else 0).first()
        if character is None:
            raise Http404("No such character")
    source = data.get("source") or ""
    status = data.get("status") or ReviewStatus.PENDING
    return ReviewFilter(
        project=project,
        character=character,
        source=source if source in DatasetSource.values else "",
        status=status if status in ReviewStatus.values else ReviewStatus.PENDING,
    )


def dataset_images_visible_to(user: AnyUser) -> QuerySet[DatasetImage]:
    return DatasetImage.objects.filter(character__project__in=project_ids_visible_to(user)).select_related(
        "character__project", "classified_character", "origin_job"
    )


def review_queue(*, user: AnyUser, review_filter: ReviewFilter, exclude: Iterable[int] = ()) -> QuerySet[DatasetImage]:
    """Images to review under ``review_filter``, oldest first (the order they arrived in)."""
    images = dataset_images_visible_to(user).filter(status=review_filter.status)
    if review_filter.project is not None:
        images = images.filter(character__project=review_filter.project)
    if review_filter.character is not None:
        images = images.filter(character=review_filter.character)
    if review_filter.source:
        images = images.filter(source=review_filter.source)
    excluded = list(exclude)
    if excluded:
        images = images.exclude(pk__in=excluded)
    return images.order_by("created_at", "pk")


def dataset_image_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> DatasetImage:
    try:
        image = dataset_images_visible_to(user).get(pk=pk)
    except (DatasetImage.DoesNotExist, ValueError, TypeError):
        raise Http404("No such dataset image") from None
    if write and not project_user_can_write(project=image.character.project, user=user):
        raise PermissionDenied("You have read-only access to this project")
    return image
