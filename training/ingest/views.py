"""Ingest pages: start a batch (editors), follow one (progress polled by HTMX), the recent batches."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from characters.models import Character
from projects.models import ArtKind
from projects.selectors import project_get_for_user, projects_visible_to
from tower.core.files import stored_name
from tower.core.pages import form_add_service_errors, page_login_required, paginate, render_page
from tower.core.users import signed_in
from training.ingest.forms import IngestForm
from training.ingest.pipeline import thumbnail_name
from training.ingest.selectors import (
    batch_get_for_user,
    batches_visible_to,
    held_image_get_for_user,
    held_images_for_page,
)
from training.ingest.services import IngestError, held_image_add, held_image_discard, ingest_batch_start
from training.llm.classify import classifier_unavailable_reason
from training.models import DatasetImage, IngestStatus


@page_login_required
@require_http_methods(["GET", "POST"])
def ingest(request: HttpRequest) -> HttpResponse:
    """GET the form and the recent batches; POST starts a batch (edit rights on the project)."""
    form = IngestForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST":
        # Access first: an outsider naming a project gets 404 and a viewer 403, whatever else is wrong.
        project = project_get_for_user(user=request.user, pk=request.POST.get("project") or 0, write=True)
        if form.is_valid():
            data = form.cleaned_data
            try:
                batch = ingest_batch_start(
                    project=project,
                    user=signed_in(request.user),
                    character=data["character"],
                    uploads=data["files"],
                    url=data["url"] or "",
                    folder_root=data["folder"] or "",
                    subfolder=data["subfolder"] or "",
                    frames_per_shot=data["frames_per_shot"],
                    playlist=data["playlist"],
                )
            except IngestError as exc:
                form_add_service_errors(form, exc)
            else:
                messages.success(request, f"Ingest #{batch.pk} queued.")
                return redirect("ingest-batch", pk=batch.pk)
    else:
        project_id = request.GET.get("project", "")
        if project_id.isdigit():
            form.initial["project"] = int(project_id)
        character_id = request.GET.get("character", "")
        if character_id.isdigit():
            form.initial["character"] = int(character_id)
    context = {
        "section": "ingest",
        "form": form,
        "page_obj": paginate(request, batches_visible_to(request.user)),
        "classifier_warnings": _classifier_warnings(request),
    }
    return render_page(request, "training/ingest/ingest.html", None, context, status=400 if form.errors else 200)


def _classifier_warnings(request: HttpRequest) -> list[tuple[str, str]]:
    """(art kind label, why) for each art kind of the user's projects that no classifier can decide.

    Said on the page before the upload: without a classifier, "Classify automatically" adds nothing.
    """
    kinds = set(projects_visible_to(request.user).values_list("art_kind", flat=True).distinct())
    labels = dict(ArtKind.choices)
    warnings = []
    for kind in sorted(kinds):
        why = classifier_unavailable_reason(art_kind=kind)
        if why:
            warnings.append((labels.get(kind, kind), why))
    return warnings


@page_login_required
@require_GET
def ingest_batch(request: HttpRequest, pk: int) -> HttpResponse:
    """The batch's stage, progress and report; the HTMX poll asks for the live fragment only."""
    batch = batch_get_for_user(user=request.user, pk=pk)
    running = batch.status in (IngestStatus.QUEUED, IngestStatus.RUNNING)
    percent = None
    if batch.progress_total:
        percent = min(100, round(100 * batch.progress_done / batch.progress_total))
    context = {
        "section": "ingest",
        "batch": batch,
        "running": running,
        "percent": percent,
        "report": batch.report or {},
        "held": held_images_for_page(user=request.user, batch=batch),
        "images": [
            (image, image.image.storage.url(thumbnail_name(stored_name(image.image))))
            for image in DatasetImage.objects.filter(ingest_batch=batch).select_related("character")[:48]
        ],
    }
    return render_page(request, "training/ingest/batch.html", "training/ingest/_batch_live.html", context)


@page_login_required
@require_POST
def held_image_action(request: HttpRequest, pk: int) -> HttpResponse:
    """Add an image kept aside to a character's dataset (assign / keep anyway), or discard it."""
    held = held_image_get_for_user(user=request.user, pk=pk, write=True)
    back = url_has_allowed_host_and_scheme(
        request.POST.get("next", ""), allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    target = request.POST["next"] if back else reverse("ingest-batch", args=[held.batch_id])
    if request.POST.get("action") == "discard":
        held_image_discard(held=held)
        messages.success(request, f"{held.source_ref or 'The image'} discarded.")
        return redirect(target)
    character = Character.objects.filter(
        pk=request.POST.get("character") or 0, project_id=held.batch.project_id
    ).first()
    if character is None:
        messages.error(request, "Choose one of the project's characters for this image.")
        return redirect(target)
    try:
        image = held_image_add(held=held, character=character, user=signed_in(request.user))
    except IngestError as exc:
        messages.error(request, f"Not added: {exc}")
    else:
        messages.success(request, f"Added to {character.name}'s dataset as image #{image.pk}, waiting for review.")
    return redirect(target)
