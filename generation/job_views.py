"""Job pages: the list, the detail with its live fragments, the actions, and thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.templatetags.static import static
from django.views.decorators.http import require_GET, require_POST

from generation.engine.preview import PreviewFile
from generation.forms import JobFilterForm
from generation.models import Asset, Job, JobLogLine, JobStatus
from generation.selectors import assets_visible_to, job_get_for_user, jobs_visible_to
from generation.services.jobs import JobError
from generation.services.submit import job_cancel, job_reproduce, job_retry, job_retry_check
from generation.services.thumbnails import asset_thumbnail_ensure
from projects.selectors import project_user_can_write
from tower.core.pages import PAGE_SIZE, page_login_required, querystring_without_page, render_page
from tower.core.users import signed_in

JOB_ACTIONS = {"cancel": job_cancel, "retry": job_retry, "reproduce": job_reproduce}
JOB_LOG_LINES = 100  # the job page's log shows (and keeps live) the newest lines
PREVIEW_EXTENSIONS = ("jpg", "png")


def job_list_page(user: Any, params: Any) -> tuple[JobFilterForm, Page, bool]:
    """The job list's form, the requested page of jobs, and whether a filter applies.

    Shared by the page and its socket (``tower.page_consumer``), which sends row updates only for
    the jobs this page shows.
    """
    form = JobFilterForm(params or None, user=user)
    # The rows show neither graph (a job's and its template's JSON, most of each row's bytes).
    jobs: QuerySet[Job] = (
        jobs_visible_to(user).defer("graph", "template__graph", "template__bindings").order_by("-created_at", "-pk")
    )
    filtered = False
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        for field, lookup in (("project", "project"), ("status", "status"), ("kind", "kind"), ("batch", "batch")):
            if data.get(field):
                jobs = jobs.filter(**{lookup: data[field]})
                filtered = True
    return form, Paginator(jobs, PAGE_SIZE).get_page(params.get("page")), filtered


@page_login_required
@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    form, page_obj, filtered = job_list_page(request.user, request.GET)
    context = {
        "section": "jobs",
        "form": form,
        "page_obj": page_obj,
        "jobs": list(page_obj),
        "live_insert": not filtered and page_obj.number == 1,
        "querystring_base": querystring_without_page(request),
    }
    return render_page(request, "generation/jobs.html", "generation/_jobs.html", context)


NODE_POSITION_STATUSES = (JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED)


def node_rows(job: Job) -> list[dict[str, Any]]:
    """One row per graph node: done (with seconds once recorded), running, failed or waiting.

    Per-node seconds are recorded when the prompt ends; while it runs, nodes ordered before the
    current one (ComfyUI runs simple graphs in id order) are shown as done.
    """
    seconds = (job.timings or {}).get("nodes") or {}
    nodes = sorted(
        ((node_id, node) for node_id, node in (job.graph or {}).items() if isinstance(node, dict)),
        key=lambda kv: (len(kv[0]), kv[0]),
    )
    current = next((i for i, (node_id, _) in enumerate(nodes) if _is_node(job.current_node, node_id)), None)
    rows = []
    for index, (node_id, node) in enumerate(nodes):
        title = (node.get("_meta") or {}).get("title") or node.get("class_type", "?")
        if job.status == JobStatus.FAILED and _is_node(job.error_node, node_id):
            state = "failed"
        elif node_id in seconds or job.status == JobStatus.SUCCEEDED:
            state = "done"
        elif job.status in NODE_POSITION_STATUSES and current is not None:
            # A cancelled (or failed) job keeps the bars it had when it stopped.
            here = "running" if job.status == JobStatus.RUNNING else "stopped"
            state = here if index == current else "done" if index < current else "waiting"
        else:
            state = "waiting"
        rows.append({"id": node_id, "label": f"{title} (#{node_id})", "state": state, "seconds": seconds.get(node_id)})
    return rows


def _is_node(label: str, node_id: str) -> bool:
    """Whether an engine label ("Grain (#4)" or "#4 ImageAddNoise") names this node."""
    if not label:
        return False
    return label.endswith(f"(#{node_id})") or label.startswith(f"#{node_id} ") or label == f"#{node_id}"


def live_preview_url(job: Job) -> str | None:
    """The URL of the job's current live frame on disk (the engine writes it while the job runs).

    The file's modification time busts browser caches, as the engine's counter does for events.
    """
    if job.is_terminal:
        return None
    preview = PreviewFile(job_id=job.pk, media_root=Path(settings.MEDIA_ROOT), media_url=settings.MEDIA_URL)
    for extension in PREVIEW_EXTENSIONS:
        relative = preview.relative_path(extension)
        try:
            modified = (preview.media_root / relative).stat().st_mtime_ns
        except OSError:
            continue
        return f"{settings.MEDIA_URL.rstrip('/')}/{relative}?v={modified}"
    return None


def job_log_lines(job: Job) -> list[JobLogLine]:
    """The newest ``JOB_LOG_LINES`` log lines, oldest first (one query)."""
    newest = list(JobLogLine.objects.filter(job=job).order_by("-id")[:JOB_LOG_LINES])
    return newest[::-1]


def job_context(job: Job, *, user: Any, preview: str | None = None) -> dict[str, Any]:
    """What the job's live fragments render: shared by the page and the page consumer.

    Without a ``preview`` URL from an event, the frame on disk is shown (a reload mid-job).
    """
    return {
        "job": job,
        "retry": job_retry_check(job=job) if job.status in (JobStatus.FAILED, JobStatus.CANCELLED) else None,
        "nodes": node_rows(job),
        "preview_url": preview or live_preview_url(job),
        "can_write": project_user_can_write(project=job.project, user=user),
        "log_limit": JOB_LOG_LINES,
    }


@page_login_required
@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = job_get_for_user(user=request.user, pk=pk)
    context = {
        "section": "jobs",
        **job_context(job, user=request.user),
        "job_assets": list(Asset.objects.filter(job=job).order_by("pk")),
        "log_lines": job_log_lines(job),
    }
    return render_page(request, "generation/job_detail.html", "generation/_job_detail_live.html", context)


@page_login_required
@require_GET
def job_workflow_json(request: HttpRequest, pk: int) -> HttpResponse:
    """The exact graph submitted to ComfyUI (API format) as a .json download, to load or re-run there."""
    job = job_get_for_user(user=request.user, pk=pk)
    if not job.graph:
        raise Http404("This job has not been submitted yet: its graph is made when a backend takes it")
    response = JsonResponse(job.graph, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="tower-job-{job.pk}-workflow-api.json"'
    return response


@page_login_required
@require_POST
def job_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in JOB_ACTIONS:
        raise Http404("No such action")
    job = job_get_for_user(user=request.user, pk=pk)
    if not project_user_can_write(project=job.project, user=request.user):
        raise PermissionDenied("You have read-only access to this project")
    try:
        result = JOB_ACTIONS[action](job=job, user=signed_in(request.user))
    except JobError as exc:
        messages.error(request, str(exc))
        return redirect("job-detail", pk=job.pk)
    if action == "cancel":
        messages.success(request, f"Job #{job.pk} cancelled.")
        return redirect("job-detail", pk=job.pk)
    messages.success(request, f"Job #{result.pk} queued ({action} of #{job.pk}).")
    return redirect("job-detail", pk=result.pk)


# --- Assets (the gallery and the asset page are in quality.views: they show scores) ------------


@page_login_required
@require_GET
def asset_thumb(request: HttpRequest, pk: int) -> HttpResponse:
    """The asset's thumbnail, made on first request and then served from storage."""
    asset = get_object_or_404(assets_visible_to(request.user).select_related(None).only("pk", "thumbnail"), pk=pk)
    return _thumbnail_redirect(asset)


@page_login_required
@require_GET
def job_thumb(request: HttpRequest, pk: int) -> HttpResponse:
    """The thumbnail of the job's first output (the jobs list shows it; no output: a placeholder)."""
    job = job_get_for_user(user=request.user, pk=pk)
    asset = Asset.objects.filter(job=job).order_by("pk").only("pk", "thumbnail").first()
    return _thumbnail_redirect(asset)


def _thumbnail_redirect(asset: Asset | None) -> HttpResponse:
    name = None
    if asset is not None:
        name = asset.thumbnail.name if asset.thumbnail else asset_thumbnail_ensure(asset_id=asset.pk)
    if not name:
        return HttpResponseRedirect(static("img/no-thumbnail.svg"))
    from django.core.files.storage import default_storage

    return HttpResponseRedirect(default_storage.url(name))
