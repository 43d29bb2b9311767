"""Project pages: list, create, and one page that edits settings, style and story bible.

They live in tower because a project page also shows its characters and jobs, and projects is
the bottom of the app order (nothing below it may be imported from there).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods, require_POST

from characters.demo import demo_projects_seed
from characters.selectors import characters_with_summary_visible_to
from generation.choices import backend_choices
from generation.models import JobKind, JobStatus
from generation.selectors import jobs_visible_to, templates_visible_to
from projects.forms import ProjectForm, StoryBibleForm, StyleForm
from projects.models import Project
from projects.selectors import project_get_for_user, project_user_can_write, projects_visible_to
from projects.services import ProjectError, project_create, project_update, style_update
from tower.core.pages import HtmxHttpRequest, form_add_service_errors, page_login_required, paginate, render_page
from tower.core.users import signed_in

ACTIVE = (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING, JobStatus.SCORING)
PHASE_TEMPLATE_KINDS = {"sheet": JobKind.CHARACTER_SHEET, "loop": JobKind.LOOP, "video": JobKind.VIDEO}


def _phase_template_choices(request: HttpRequest, project: Project | None = None) -> dict[str, list[str]]:
    """Per phase, the slugs of the templates of its kind the project can use (its own and the shared)."""
    scope = Q(project__isnull=True) | Q(project=project) if project is not None else Q(project__isnull=True)
    rows = templates_visible_to(request.user).filter(scope, kind__in=PHASE_TEMPLATE_KINDS.values())
    slugs = sorted(set(rows.values_list("kind", "slug")))
    return {key: [slug for k, slug in slugs if k == kind] for key, kind in PHASE_TEMPLATE_KINDS.items()}


@page_login_required
def project_list(request: HttpRequest) -> HttpResponse:
    projects = (
        projects_visible_to(request.user)
        .annotate(
            character_count=Count("characters", distinct=True),
            job_count=Count("jobs", distinct=True),
            active_count=Count("jobs", filter=Q(jobs__status__in=ACTIVE), distinct=True),
        )
        .order_by("name", "pk")
    )
    context = {"section": "projects", "page_obj": paginate(request, projects)}
    return render_page(request, "projects/list.html", "projects/_list.html", context)


@page_login_required
@require_http_methods(["GET", "POST"])
def project_create_view(request: HttpRequest) -> HttpResponse:
    form = ProjectForm(request.POST or None, template_choices=_phase_template_choices(request))
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(owner=signed_in(request.user), **form.cleaned_data)
        except (ValidationError, ProjectError) as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(request, f"Project “{project.name}” created.")
            return redirect("project-detail", pk=project.pk)
    status = 400 if form.errors else 200
    return render_page(request, "projects/create.html", None, {"section": "projects", "form": form}, status=status)


def _detail_context(request: HttpRequest, project: Project, **forms: Any) -> dict[str, Any]:
    return {
        "section": "projects",
        "project": project,
        "can_write": project_user_can_write(project=project, user=request.user),
        "settings_form": forms.get("settings_form")
        or ProjectForm(instance=project, template_choices=_phase_template_choices(request, project)),
        "style_form": forms.get("style_form") or StyleForm(instance=project.style, offered=backend_choices()),
        "bible_form": forms.get("bible_form") or StoryBibleForm.from_bible(project.story_bible or {}),
        "characters": list(characters_with_summary_visible_to(request.user).filter(project=project)[:12]),
        "jobs": list(jobs_visible_to(request.user).filter(project=project).order_by("-created_at")[:10]),
    }


@page_login_required
@require_http_methods(["GET", "POST"])
def project_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """GET the project page; POST saves its name, description and art kind."""
    project = project_get_for_user(user=request.user, pk=pk, write=request.method == "POST")
    form = None
    if request.method == "POST":
        form = ProjectForm(request.POST, instance=project, template_choices=_phase_template_choices(request, project))
        if form.is_valid():
            try:
                project_update(project=project, **form.cleaned_data)
            except (ValidationError, ProjectError) as exc:
                form_add_service_errors(form, exc)
            else:
                messages.success(request, "Project saved.")
                return redirect("project-detail", pk=project.pk)
        project.refresh_from_db()
    context = _detail_context(request, project, settings_form=form)
    return render_page(request, "projects/detail.html", None, context, status=400 if form else 200)


@page_login_required
@require_POST
def project_style(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=pk, write=True)
    form = StyleForm(request.POST, instance=project.style, offered=backend_choices())
    if form.is_valid():
        try:
            style_update(project=project, **form.style_fields())
        except (ValidationError, ProjectError) as exc:
            form_add_service_errors(form, exc)
        else:
            if request.htmx:
                project.style.refresh_from_db()
                saved = StyleForm(instance=project.style, offered=backend_choices())
                context = _detail_context(request, project, style_form=saved)
                context["style_saved"] = True
                return render_page(request, "projects/detail.html", "projects/_style_form.html", context)
            messages.success(request, "Generation style saved.")
            return redirect("project-detail", pk=project.pk)
    project = project_get_for_user(user=request.user, pk=pk)  # the style as stored, not as typed
    context = _detail_context(request, project, style_form=form)
    return render_page(request, "projects/detail.html", "projects/_style_form.html", context, status=400)


@page_login_required
@require_POST
def project_bible(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    project = project_get_for_user(user=request.user, pk=pk, write=True)
    form = StoryBibleForm(request.POST)
    if form.is_valid():
        try:
            project_update(project=project, story_bible=form.bible(project.story_bible or {}))
        except (ValidationError, ProjectError) as exc:
            form_add_service_errors(form, exc)
        else:
            if request.htmx:
                context = _detail_context(request, project, bible_form=form)
                context["bible_saved"] = True
                return render_page(request, "projects/detail.html", "projects/_bible_form.html", context)
            messages.success(request, "Story bible saved.")
            return redirect("project-detail", pk=project.pk)
    context = _detail_context(request, project, bible_form=form)
    return render_page(request, "projects/detail.html", "projects/_bible_form.html", context, status=400)


@page_login_required
@require_POST
def project_examples_create(request: HttpRequest) -> HttpResponse:
    """The dashboard's "Create the example projects": seeded for, and owned by, the signed-in user."""
    outcomes = demo_projects_seed(owner=signed_in(request.user))
    created = [o.project.name for o in outcomes if o.created]
    if created:
        messages.success(request, f"Created the example projects: {', '.join(created)}.")
    else:
        messages.info(request, "You already have the example projects; nothing was changed.")
    return redirect("dashboard")
