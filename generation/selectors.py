"""Reads for jobs, assets, backends and templates, filtered by project visibility."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from generation.models import Asset, Job, WorkflowTemplate
from projects.selectors import AnyUser, project_ids_visible_to


def jobs_visible_to(user: AnyUser) -> QuerySet[Job]:
    return Job.objects.filter(project__in=project_ids_visible_to(user)).select_related(
        "project", "character", "template", "backend"
    )


def assets_visible_to(user: AnyUser) -> QuerySet[Asset]:
    return Asset.objects.filter(project__in=project_ids_visible_to(user)).select_related("project", "job")


def templates_visible_to(user: AnyUser) -> QuerySet[WorkflowTemplate]:
    return WorkflowTemplate.objects.filter(
        Q(project__isnull=True) | Q(project__in=project_ids_visible_to(user))
    ).select_related("project")
