"""Reads for ingestion pages; access through the project's visibility rule."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from projects.selectors import AnyUser, project_ids_visible_to
from training.models import IngestBatch


def batches_visible_to(user: AnyUser) -> QuerySet[IngestBatch]:
    return IngestBatch.objects.filter(project__in=project_ids_visible_to(user)).select_related(
        "project", "character", "created_by"
    )


def batch_get_for_user(*, user: AnyUser, pk: int | str) -> IngestBatch:
    try:
        return batches_visible_to(user).get(pk=pk)
    except (IngestBatch.DoesNotExist, ValueError, TypeError):
        raise Http404("No such ingest batch") from None
