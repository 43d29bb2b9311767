"""Orchestration pages: a project's list, one orchestration's three phase cards (live), start, advance, cancel.

The phase cards are one fragment (``quality/_orchestration_phases.html``) rendered from the
database: the page includes it, a ``GET`` with HTMX answers it alone, and the page socket
(``tower.page_consumer`` with ``?orchestration=ID``) re-sends it out-of-band after each
orchestration event and each end of one of its jobs (:func:`orchestration_page_fragments`).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_POST

from characters.selectors import character_get_for_user
from generation.events import orchestration_group, project_group
from generation.models import Job
from projects.selectors import project_get_for_user, project_user_can_write
from quality.models import Orchestration
from quality.orchestration_selectors import orchestration_get_for_user, orchestrations_visible_to
from quality.services.orchestration import (
    PHASE_KEYS,
    OrchestrationError,
    orchestration_advance,
    orchestration_cancel,
    orchestration_start,
)
from tower.core.pages import page_login_required, paginate, querystring_without_page, render_page
from tower.core.users import signed_in

PHASE_TITLES = {1: "Character sheet", 2: "Animation loop", 3: "Video"}
# Job events that change what a phase card shows (its outputs, its scores); progress does not.
CARD_EVENTS = frozenset({"job_complete", "job_failed", "job_cancelled", "quality_evaluation"})
ORCHESTRATION_EVENTS = frozenset(
    {"orchestration_progress", "phase_passed", "orchestration_complete", "orchestration_failed"}
)


def phase_cards(orchestration: Orchestration) -> list[dict[str, Any]]:
    """Each phase with its attempts' outputs (from the prefetched rows of ``orchestrations_visible_to``)."""
    cards = []
    for run in sorted(orchestration.phase_runs.all(), key=lambda r: r.phase):
        jobs = sorted(run.jobs.all(), key=lambda j: j.pk)
        gate = run.gate or {}
        cards.append(
            {
                "run": run,
                "title": PHASE_TITLES[run.phase],
                "template": (orchestration.templates or {}).get(PHASE_KEYS[run.phase], ""),
                "jobs": jobs,
                "assets": [asset for job in jobs for asset in sorted(job.assets.all(), key=lambda a: a.pk)],
                "gate": gate,
                "verdict": _verdict(gate),
                "checks": list((gate.get("checks") or {}).values()),
            }
        )
    return cards


def _verdict(gate: dict[str, Any]) -> str:
    if not gate:
        return ""
    if gate.get("not_evaluated"):
        return "not evaluated"
    passed = gate.get("passed")
    return "passed" if passed is True else "failed" if passed is False else "not evaluated"


def _context(request_user: Any, orchestration: Orchestration) -> dict[str, Any]:
    return {
        "orchestration": orchestration,
        "cards": phase_cards(orchestration),
        "can_write": project_user_can_write(project=orchestration.project, user=request_user),
    }


@page_login_required
@require_GET
def orchestration_list(request: HttpRequest) -> HttpResponse:
    """A project's orchestrations (``?project=``), newest first; every visible one without it."""
    orchestrations = orchestrations_visible_to(request.user)
    project = None
    if request.GET.get("project"):
        project = project_get_for_user(user=request.user, pk=_id(request.GET["project"]))
        orchestrations = orchestrations.filter(project=project)
    page = paginate(request, orchestrations.order_by("-created_at", "-pk"))
    return render_page(
        request,
        "quality/orchestrations.html",
        None,
        {"page_obj": page, "querystring_base": querystring_without_page(request), "project": project},
    )


@page_login_required
@require_GET
def orchestration_detail(request: HttpRequest, pk: int) -> HttpResponse:
    orchestration = orchestration_get_for_user(user=request.user, pk=pk)
    context = _context(request.user, orchestration)
    return render_page(request, "quality/orchestration.html", "quality/_orchestration_phases.html", context)


@page_login_required
@require_POST
def orchestration_start_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Start an orchestration of character ``pk`` (the character page's card)."""
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    templates = {key: request.POST[key].strip() for key in PHASE_KEYS.values() if request.POST.get(key, "").strip()}
    try:
        orchestration = orchestration_start(
            user=signed_in(request.user),
            project=character.project,
            character=character,
            prompt=request.POST.get("prompt", "")[:20_000],
            auto_advance=request.POST.get("auto_advance") == "on",
            templates=templates,
        )
    except OrchestrationError as exc:
        messages.error(request, f"The orchestration could not start: {exc}")
        return redirect("character-detail", pk=character.pk)
    messages.success(request, f"Orchestration #{orchestration.pk} started: phase 1 is queued.")
    return redirect("orchestration-detail", pk=orchestration.pk)


ACTIONS = {"advance": orchestration_advance, "cancel": orchestration_cancel}


@page_login_required
@require_POST
def orchestration_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404("No such action")
    orchestration = orchestration_get_for_user(user=request.user, pk=pk, write=True)
    try:
        ACTIONS[action](orchestration=orchestration, user=signed_in(request.user))
    except OrchestrationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Next phase approved." if action == "advance" else "Orchestration cancelled.")
    return redirect("orchestration-detail", pk=orchestration.pk)


def _id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Http404("No such project") from None
    if not 0 < number < 2**63:
        raise Http404("No such project")
    return number


# --- Live: what the page socket sends an orchestration page ----------------------------------


def orchestration_page_groups(user: Any, orchestration_id: str) -> list[str] | None:
    """The groups an orchestration page's socket joins, or None when the user may not see it."""
    if not orchestration_id.isdigit() or not 0 < int(orchestration_id) < 2**63:
        return None
    row = orchestrations_visible_to(user).filter(pk=int(orchestration_id)).values("pk", "project_id").first()
    if row is None:
        return None
    # The project's group carries its jobs' events (outputs, scores) as well as the orchestration's.
    return [orchestration_group(row["pk"]), project_group(row["project_id"])]


def orchestration_page_fragments(*, user: Any, event: dict[str, Any], orchestration_id: int, csrf_token: str) -> str:
    """The phase cards again (out-of-band) when ``event`` changes them, else ""."""
    kind = event.get("type")
    if kind in ORCHESTRATION_EVENTS:
        if event.get("orchestration") != orchestration_id:
            return ""
    elif kind in CARD_EVENTS:
        job_id = event.get("job")
        if job_id is None or not Job.objects.filter(pk=job_id, phase_runs__orchestration_id=orchestration_id).exists():
            return ""
    else:
        return ""
    try:
        orchestration = orchestration_get_for_user(user=user, pk=orchestration_id)
    except (Http404, PermissionDenied):
        return ""
    context = {**_context(user, orchestration), "oob": True, "csrf_token": csrf_token}
    return render_to_string("quality/_orchestration_phases.html", context)
