"""Orchestration reads: what a user may see of orchestrations, and a phase as pages and the API show it."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from generation.models import Job
from projects.selectors import AnyUser, project_ids_visible_to, project_user_can_write
from quality.models import Orchestration, PhaseRun


def orchestrations_visible_to(user: AnyUser) -> QuerySet[Orchestration]:
    """Orchestrations of projects the user can see, with what a page or answer shows of them."""
    return (
        Orchestration.objects.filter(project__in=project_ids_visible_to(user))
        .select_related("project", "character", "created_by")
        .prefetch_related(
            Prefetch(
                "phase_runs",
                queryset=PhaseRun.objects.order_by("phase").prefetch_related(
                    Prefetch("jobs", queryset=Job.objects.defer("graph").order_by("pk").prefetch_related("assets"))
                ),
            )
        )
    )


def orchestration_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> Orchestration:
    """The orchestration, or 404 when invisible (403 with ``write`` for a viewer: they know it exists)."""
    from django.core.exceptions import PermissionDenied
    from django.http import Http404

    try:
        orchestration = orchestrations_visible_to(user).get(pk=int(pk))
    except (Orchestration.DoesNotExist, ValueError, TypeError, OverflowError):
        raise Http404("No such orchestration") from None
    if write and not project_user_can_write(project=orchestration.project, user=user):
        raise PermissionDenied("You have read-only access to this project")
    return orchestration


def phase_run_summary(run: PhaseRun) -> dict[str, Any]:
    """One phase as the API and the pages show it (from prefetched jobs when there are)."""
    jobs = list(run.jobs.all())
    return {
        "phase": run.phase,
        "status": run.status,
        "attempts": run.attempts,
        "jobs": [job.pk for job in sorted(jobs, key=lambda j: j.pk)],
        "gate": run.gate or {},
        "best_asset": run.best_asset_id,
        "input_asset": run.input_asset_id,
        "input_image": run.input_image_id,
        "handoff": run.handoff or {},
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }
