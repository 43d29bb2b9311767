"""Reads for jobs, assets, backends and templates, filtered by project visibility."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.http import Http404

from generation.models import Asset, InputImage, Job, WorkflowTemplate
from projects.selectors import AnyUser, in_visible_project, project_ids_visible_to


def jobs_visible_to(user: AnyUser) -> QuerySet[Job]:
    return Job.objects.filter(in_visible_project(user)).select_related("project", "character", "template", "backend")


def job_get_for_user(*, user: AnyUser, pk: int | str) -> Job:
    """The job if ``user`` may see it: how generation's pages, API and sockets read one job.

    A job the user may not see is a 404, the same answer as a missing one (and as a pk that is
    not a number, which a URL or a socket's query string can carry).
    """
    try:
        return jobs_visible_to(user).get(pk=pk)
    except (Job.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such job") from None


def assets_visible_to(user: AnyUser) -> QuerySet[Asset]:
    return Asset.objects.filter(in_visible_project(user)).select_related("project", "job")


def input_images_visible_to(user: AnyUser) -> QuerySet[InputImage]:
    """Images uploaded as job inputs to the projects ``user`` can see, newest first."""
    return InputImage.objects.filter(project__in=project_ids_visible_to(user)).select_related("project")


def input_image_get_for_user(*, user: AnyUser, pk: int | str) -> InputImage:
    try:
        return input_images_visible_to(user).get(pk=pk)
    except (InputImage.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such input image") from None


def templates_visible_to(user: AnyUser) -> QuerySet[WorkflowTemplate]:
    return WorkflowTemplate.objects.filter(
        Q(project__isnull=True) | Q(project__in=project_ids_visible_to(user))
    ).select_related("project")


def job_debug(*, job: Job) -> dict:
    """Everything needed to understand a job: parameters, graph, log, error, timings, backend."""
    from generation.models import JobLogLine

    backend = None
    b = job.backend if job.backend_id else None
    if b is not None:
        backend = {"id": b.pk, "name": b.name, "url": b.url, "healthy": b.healthy, "version": b.comfyui_version}
    reproduction = None
    if job.reproduce_of_id:
        original = sorted(Asset.objects.filter(job_id=job.reproduce_of_id).values_list("sha256", flat=True))
        mine = sorted(Asset.objects.filter(job=job).values_list("sha256", flat=True))
        done = job.status == "succeeded"
        reproduction = {
            "original": job.reproduce_of_id,
            "identical": (original == mine and bool(mine)) if done else None,
            "original_sha256": original,
            "reproduced_sha256": mine,
        }
    return {
        "job": job,
        "backend": backend,
        "log": list(JobLogLine.objects.filter(job=job).order_by("id")[:500]),
        "reproduction": reproduction,
    }


def backends_user_can_manage(user: AnyUser) -> bool:
    """Adding, editing, enabling and checking ComfyUI backends is for staff (as in the admin):
    backends are shared by every project, so no project role grants it."""
    return isinstance(user, User) and user.is_active and (user.is_staff or user.is_superuser)
