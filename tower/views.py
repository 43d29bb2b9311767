"""The dashboard, sign-in pages and favicon (the page plumbing apps use is ``tower.core.pages``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import views as auth_views
from django.db.models import Case, Count, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.http import FileResponse, HttpRequest, HttpResponse
from django.urls import reverse_lazy
from django.views.decorators.http import require_GET

from characters.models import Character
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


def _count_of(rows: QuerySet[Any], link: str) -> Coalesce:
    """How many of ``rows`` point at the outer row, as a subquery per row shown: a join with
    COUNT(DISTINCT) multiplied a project's jobs by its characters."""
    per_row = rows.filter(**{link: OuterRef("pk")}).order_by().values(link).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(per_row), 0)


def backend_health() -> list[dict[str, Any]]:
    """Every backend with its VRAM use and how many of its jobs are on the GPU now (one query)."""
    live = Job.objects.filter(status__in=(JobStatus.SUBMITTED, JobStatus.RUNNING))
    rows = Backend.objects.annotate(live_jobs=_count_of(live, "backend")).order_by("name")
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


# JSON the dashboard never shows and most of a job row's bytes.
LIST_DEFERRED = ("graph", "template__graph", "template__bindings")


def dashboard_active_jobs(user: Any) -> list[Job]:
    """The live jobs the dashboard lists under "Running and queued": those on a GPU (or being
    scored) first, then the queue in the order it will run."""
    waiting = Case(When(status=JobStatus.QUEUED, then=Value(1)), default=Value(0))
    active = jobs_visible_to(user).filter(status__in=ACTIVE_STATUSES).defer(*LIST_DEFERRED)
    return list(active.order_by(waiting, "created_at", "pk")[:DASHBOARD_ACTIVE_ROWS])


def dashboard_recent_assets(user: Any) -> list[Any]:
    return list(
        assets_visible_to(user)
        .select_related("job__character")
        .defer("job__graph")
        .order_by("-created_at")[:DASHBOARD_RECENT_ASSETS]
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
                active_count=_count_of(Job.objects.filter(status__in=ACTIVE_STATUSES), "project"),
                character_count=_count_of(Character.objects.all(), "project"),
            )
            .order_by("name")[:20]
        ),
    }
    return render_page(request, "tower/dashboard.html", "tower/_dashboard_live.html", context)
