"""The captions page of a character: captions edited inline, bulk edits, auto-captioning, classification.

Every view goes through ``character_get_for_user`` (outsiders 404, viewers 403 on writes). Bulk
writes keep what they changed in the session, so the page can offer one "Undo" that restores
those captions (never one edited since).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from characters.models import Character
from characters.selectors import character_get_for_user, characters_visible_to
from projects.selectors import project_get_for_user, project_user_can_write
from tower.core.pages import HtmxHttpRequest, page_login_required, paginate, querystring_without_page, render_page
from training.llm import runs
from training.llm.captions import (
    CaptionChange,
    caption_with_trigger,
    captions_add_tag,
    captions_find_replace,
    captions_restore,
    dataset_image_caption_set,
)
from training.llm.tasks import enqueue_classify
from training.models import DatasetImage, ReviewStatus

PAGE_SIZE = 48
STATUS_FILTERS = ("approved", "pending", "rejected", "all")
UNDO_KEY = "caption_undo"
UNDO_MAX = 5000  # captions kept for one undo (the session row stays small)


def _statuses(value: str | None) -> tuple[str, list[str]]:
    chosen = value if value in STATUS_FILTERS else "approved"
    return chosen, (list(ReviewStatus.values) if chosen == "all" else [chosen])


def _back(character: Character, status: str) -> HttpResponse:
    return redirect(reverse("character-captions", args=[character.pk]) + "?" + urlencode({"status": status}))


def _errors(exc: ValidationError) -> str:
    return "; ".join(exc.messages)


def _row(image: DatasetImage, character: Character) -> DatasetImage:
    image.training_text = caption_with_trigger(image.caption, character.trigger_word)  # type: ignore[attr-defined]  # for the template
    image.disagrees = (  # type: ignore[attr-defined]  # for the template
        image.classified_character_id is not None and image.classified_character_id != image.character_id
    )
    return image


def _context(request: HtmxHttpRequest, character: Character, **extra: Any) -> dict[str, Any]:
    status, statuses = _statuses(request.GET.get("status") or request.POST.get("status"))
    images = (
        DatasetImage.objects.filter(character=character, status__in=statuses)
        .select_related("classified_character")
        .order_by("-created_at", "-pk")
    )
    page_obj = paginate(request, images, per_page=PAGE_SIZE)
    for image in page_obj.object_list:
        _row(image, character)
    undo = request.session.get(UNDO_KEY)
    return {
        "section": "characters",
        "character": character,
        "project": character.project,
        "can_write": project_user_can_write(project=character.project, user=request.user),
        "status": status,
        "status_filters": STATUS_FILTERS,
        "page_obj": page_obj,
        "querystring_base": querystring_without_page(request),
        "run": runs.caption_run_get(character_id=character.pk),
        "llm_configured": runs.llm_configured(),
        "undo": undo if undo and undo.get("character") == character.pk else None,
        **extra,
    }


@page_login_required
@require_GET
def character_captions(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    character = character_get_for_user(user=request.user, pk=pk)
    context = _context(request, character)
    return render_page(request, "training/captions/page.html", "training/captions/_list.html", context)


@page_login_required
@require_GET
def caption_run_status(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The run panel, polled by HTMX while a run is active (without JS, the page itself)."""
    character = character_get_for_user(user=request.user, pk=pk)
    status = _statuses(request.GET.get("status"))[0]
    if not request.htmx:
        return _back(character, status)
    context = {"character": character, "run": runs.caption_run_get(character_id=character.pk), "status": status}
    return render_page(request, "training/captions/_run.html", None, context)


@page_login_required
@require_POST
def caption_save(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    visible = DatasetImage.objects.filter(character__in=characters_visible_to(request.user))
    image = visible.select_related("character__project", "classified_character").filter(pk=pk).first()
    if image is None:
        raise Http404("No such dataset image")
    project_get_for_user(user=request.user, pk=image.character.project_id, write=True)
    character = image.character
    error = ""
    try:
        dataset_image_caption_set(image=image, caption=request.POST.get("caption", ""))
    except ValidationError as exc:
        error = _errors(exc)
        image.refresh_from_db(fields=["caption", "caption_source"])
    if request.htmx:
        context = {"image": _row(image, character), "character": character, "can_write": True, "row_error": error}
        context["row_saved"] = not error
        context["status"] = _statuses(request.POST.get("status"))[0]
        # 200 even with an error: htmx does not swap a 4xx answer, and the row must show the error
        # in place of the one it had (a later successful save swaps in a row without it).
        return render_page(request, "training/captions/_row.html", "training/captions/_row.html", context)
    if error:
        messages.error(request, f"Caption of image #{image.pk} not saved: {error}")
    else:
        messages.success(request, f"Caption of image #{image.pk} saved.")
    return _back(character, _statuses(request.POST.get("status"))[0])


def _selected(request: HtmxHttpRequest) -> list[int]:
    return [int(v) for v in request.POST.getlist("images") if v.isdigit()]


def _remember(request: HtmxHttpRequest, character: Character, label: str, changes: list[CaptionChange]) -> str:
    if not changes:
        return ""
    if len(changes) > UNDO_MAX:
        request.session.pop(UNDO_KEY, None)
        return " (too many captions to offer an undo)"
    request.session[UNDO_KEY] = {
        "character": character.pk,
        "label": label,
        "changes": [c.as_list() for c in changes],
    }
    return " Undo is available until the next bulk change."


@page_login_required
@require_POST
def captions_bulk(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Prepend or append one tag to the selected images' captions."""
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    status = _statuses(request.POST.get("status"))[0]
    position = request.POST.get("position", "prepend")
    ids = _selected(request)
    if not ids:
        messages.error(request, "Select at least one image first; nothing was changed.")
        return _back(character, status)
    tag = request.POST.get("tag", "")
    try:
        changes = captions_add_tag(character=character, image_ids=ids, tag=tag, position=position)
    except ValidationError as exc:
        messages.error(request, f"Nothing was changed: {_errors(exc)}")
        return _back(character, status)
    tag = " ".join(tag.split()).strip(" ,")
    where = "start" if position == "prepend" else "end"
    label = f"“{tag}” added at the {where} of {len(changes)} captions"
    note = _remember(request, character, label, changes)
    kept = len(ids) - len(changes)
    messages.success(
        request,
        f"Added “{tag}” at the {where} of {len(changes)} of {len(ids)} selected captions"
        + (f" ({kept} already had it)" if kept else "")
        + "."
        + note,
    )
    return _back(character, status)


@page_login_required
@require_POST
def captions_replace(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Find and replace across the character's captions: the first post previews the counts, ``apply`` writes."""
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    status, statuses = _statuses(request.POST.get("status"))
    find, replace = request.POST.get("find", ""), request.POST.get("replace", "")
    case_sensitive = bool(request.POST.get("case_sensitive"))
    apply = request.POST.get("apply") == "1"
    try:
        result = captions_find_replace(
            character=character,
            find=find,
            replace=replace,
            case_sensitive=case_sensitive,
            statuses=statuses,
            apply=apply,
        )
    except ValidationError as exc:
        messages.error(request, f"Nothing was changed: {_errors(exc)}")
        return _back(character, status)
    if not apply:
        preview = {"find": find, "replace": replace, "case_sensitive": case_sensitive, "result": result}
        context = _context(request, character, preview=preview)
        return render_page(request, "training/captions/page.html", None, context)
    label = f"“{find}” replaced by “{replace}” in {result.images} captions"
    note = _remember(request, character, label, result.changes)
    messages.success(
        request, f"Replaced {result.occurrences} occurrences of “{find}” in {result.images} captions." + note
    )
    return _back(character, status)


@page_login_required
@require_POST
def captions_undo(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    status = _statuses(request.POST.get("status"))[0]
    undo = request.session.get(UNDO_KEY)
    if not undo or undo.get("character") != character.pk:
        messages.error(request, "There is no bulk change to undo.")
        return _back(character, status)
    changes = [CaptionChange.from_list(row) for row in undo["changes"]]
    restored, skipped = captions_restore(character=character, changes=changes)
    request.session.pop(UNDO_KEY, None)
    text = f"Undone: {undo['label']}. {restored} captions restored"
    text += f"; {skipped} edited since were left as they are." if skipped else "."
    messages.success(request, text)
    return _back(character, status)


@page_login_required
@require_POST
def captions_auto(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    status, statuses = _statuses(request.POST.get("status"))
    try:
        run = runs.caption_run_start(
            character=character,
            method=request.POST.get("method", "llm"),
            style=request.POST.get("style", "tags"),
            statuses=statuses,
            overwrite=bool(request.POST.get("overwrite")),
            user=request.user,
        )
    except ValidationError as exc:
        messages.error(request, f"Captioning not started: {_errors(exc)}")
    else:
        how = "the vision LLM" if run["method"] == "llm" else "tags"
        messages.success(request, f"Captioning {run['total']} {status} images with {how}; progress is shown below.")
    return _back(character, status)


@page_login_required
@require_POST
def classify_again(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Classify the selected images (or all shown by the status filter) again, in a task."""
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    status, statuses = _statuses(request.POST.get("status"))
    images = DatasetImage.objects.filter(character=character)
    ids = _selected(request)
    images = images.filter(pk__in=ids) if ids else images.filter(status__in=statuses)
    image_ids = list(images.values_list("pk", flat=True))
    if not image_ids:
        messages.error(request, "No images to classify.")
        return _back(character, status)
    label = f"classify-{character.pk}-{len(image_ids)}-{image_ids[0]}"
    transaction.on_commit(lambda: enqueue_classify(image_ids, label=label))
    messages.success(
        request,
        f"Classifying {len(image_ids)} images again; the results appear here as they are stored "
        "(images decided by hand are kept).",
    )
    return _back(character, status)
