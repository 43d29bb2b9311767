"""The dashboard, sign-in pages and favicon (the page plumbing apps use is ``tower.core.pages``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import views as auth_views
from django.db.models import Case, Count, Q, Value, When
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import reverse_lazy
from django.views.decorators.http import require_GET

from generation.models import Backend, Job, JobStatus
from generation.selectors import assets_visible_to, backends_user_can_manage, jobs_visible_to
from projects.selectors import projects_visible_to
from tower.core.pages import page_login_required, render_page

ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SCORING)

login_view = auth_views.LoginView.as_view(
    template_name="registration/login.html", redirect_authenticated_user=True, next_page=reverse_lazy("dashboard")
)
logout_view = auth_views.LogoutView.as_view(next_page=reverse_lazy("login"))


FAVICON = Path(__file__).resolve().parent.parent / "static" / "favicon.ico"


@require_GET
def favicon(request: HttpRequest) -> FileResponse:
    """``/favicon.ico``, which browsers and tools ask for at the root whatever the page links."""
    response = FileResponse(FAVICON.open("rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


def backend_health() -> list[dict[str, Any]]:
    """Every backend with its VRAM use and how many of its jobs are on the GPU now (one query)."""
    rows = Backend.objects.annotate(
        live_jobs=Count("jobs", filter=Q(jobs__status__in=(JobStatus.SUBMITTED, JobStatus.RUNNING)))
    ).order_by("name")
    health = []
    for backend in rows:
        devices = (backend.stats or {}).get("devices") or []
        total = sum(int(d.get("vram_total") or 0) for d in devices if isinstance(d, dict))
        free = sum(int(d.get("vram_free") or 0) for d in devices if isinstance(d, dict))
        used = (total - free) / total if total else None
        health.append(
            {
                "backend": backend,
                "vram_used_pct": round(used * 100) if used is not None else None,
                "vram_total_gib": round(total / 1024**3, 1) if total else None,
                "device": devices[0].get("name", "") if devices and isinstance(devices[0], dict) else "",
            }
        )
    return health


DASHBOARD_ACTIVE_ROWS = 20
DASHBOARD_RECENT_ASSETS = 12


def dashboard_active_jobs(user: Any) -> list[Job]:
    """The live jobs the dashboard lists under "Running and queued": those on a GPU (or being
    scored) first, then the queue in the order it will run."""
    waiting = Case(When(status=JobStatus.QUEUED, then=Value(1)), default=Value(0))
    active = jobs_visible_to(user).filter(status__in=ACTIVE_STATUSES)
    return list(active.order_by(waiting, "created_at", "pk")[:DASHBOARD_ACTIVE_ROWS])


def dashboard_recent_assets(user: Any) -> list[Any]:
    return list(
        assets_visible_to(user).select_related("job__character").order_by("-created_at")[:DASHBOARD_RECENT_ASSETS]
    )


@page_login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        "section": "dashboard",
        "active_jobs": dashboard_active_jobs(user),
        "recent_assets": dashboard_recent_assets(user),
        "backends": backend_health(),
        "can_manage_backends": backends_user_can_manage(user),
        "projects": list(
            projects_visible_to(user)
            .annotate(
                active_count=Count("jobs", filter=Q(jobs__status__in=ACTIVE_STATUSES), distinct=True),
                character_count=Count("characters", distinct=True),
            )
            .order_by("name")[:20]
        ),
    }
    return render_page(request, "tower/dashboard.html", "tower/_dashboard_live.html", context)
