"""The keyboard-driven review page, and the learned-negatives editor of the character page.

One card at a time. Every key is also a button in a form that POSTs: with HTMX the server answers
with the next card (the fragment); without JS it redirects to the page (post/redirect/get). The
session keeps an undo stack, the skipped images and how many were reviewed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from characters.models import ReferenceImage
from characters.selectors import character_get_for_user, characters_visible_to
from characters.services import CharacterError, character_update, reference_delete
from generation.models import Job, JobStatus
from generation.services.jobs import JobError
from generation.services.submit import job_cancel
from projects.selectors import project_user_can_write, projects_visible_to
from tower.core.pages import HtmxHttpRequest, page_login_required, render_page
from tower.core.users import signed_in
from training.ingest.selectors import held_images_for_page
from training.models import DatasetSource, RejectionCategory, ReviewStatus
from training.review.feedback import LearnedNegativesError, category_terms, parse_learned_negatives
from training.review.selectors import ReviewFilter, dataset_image_get_for_user, review_filter_from, review_queue
from training.review.services import dataset_image_promote, dataset_image_regenerate
from training.review.session import ReviewSession
from training.services import (
    CurationError,
    dataset_image_restore,
    dataset_images_approve,
    dataset_images_reject,
    review_state,
)

ACTIONS = ("approve", "reject", "skip", "promote")
# Digits 1–9 in the order of RejectionCategory: R then the digit rejects with that category.
CATEGORY_KEYS = [(str(n), value, label) for n, (value, label) in enumerate(RejectionCategory.choices, start=1)]
CATEGORY_LABELS = dict(RejectionCategory.choices)


def _card_context(
    request: HtmxHttpRequest,
    review_filter: ReviewFilter,
    *,
    current_pk: int | None = None,
    notice: str = "",
    error: str = "",
    reject_data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    session = ReviewSession(request.session)
    queue = review_queue(user=request.user, review_filter=review_filter, exclude=session.skipped)
    current = None
    if current_pk is not None:
        try:
            current = dataset_image_get_for_user(user=request.user, pk=current_pk)
        except Http404:
            current = None
    head = list(queue.exclude(pk=current.pk)[:2] if current else queue[:2])
    if current is None and head:
        current = head.pop(0)
    following = head[0] if head else None
    last = session.peek()
    return {
        "section": "review",
        "filter": review_filter,
        "filter_query": urlencode(review_filter.as_query()),
        "filter_fields": review_filter.as_query().items(),
        "image": current,
        "next_image": following,
        "left": queue.count(),
        "skipped": len(session.skipped),
        "reviewed": session.reviewed,
        "can_undo": last is not None,
        "last_action": last,
        "can_write": current is not None
        and project_user_can_write(project=current.character.project, user=request.user),
        "category_keys": [
            (digit, value, label, ", ".join(category_terms(value, art_kind=current.character.project.art_kind)))
            if current is not None
            else (digit, value, label, "")
            for digit, value, label in CATEGORY_KEYS
        ],
        "notice": notice,
        "error": error,
        "reject": reject_data or {"categories": [], "note": "", "regenerate": False},
    }


def _page_context(request: HtmxHttpRequest, review_filter: ReviewFilter, **card: Any) -> dict[str, Any]:
    context = _card_context(request, review_filter, **card)
    characters = characters_visible_to(request.user).order_by("project__name", "name")
    if review_filter.project is not None:
        characters = characters.filter(project=review_filter.project)
    context.update(
        projects=list(projects_visible_to(request.user).order_by("name")[:200]),
        characters=list(characters[:500]),
        sources=DatasetSource.choices,
        statuses=ReviewStatus.choices,
        held=held_images_for_page(
            user=request.user, project_id=review_filter.project.pk if review_filter.project else None
        ),
    )
    return context


@page_login_required
@require_GET
def review(request: HtmxHttpRequest) -> HttpResponse:
    review_filter = review_filter_from(user=request.user, data=request.GET)
    image = request.GET.get("image", "")
    current = int(image) if image.isdigit() else None
    context = _page_context(request, review_filter, current_pk=current)
    return render_page(request, "training/review/review.html", "training/review/_card.html", context)


def _answer(
    request: HtmxHttpRequest,
    review_filter: ReviewFilter,
    *,
    notice: str = "",
    error: str = "",
    current_pk: int | None = None,
    reject_data: dict[str, Any] | None = None,
) -> HttpResponse:
    """The next card (HTMX), the page again with the error (400), or a redirect to the page."""
    status = 400 if error else 200
    if request.htmx:
        context = _card_context(
            request, review_filter, current_pk=current_pk, notice=notice, error=error, reject_data=reject_data
        )
        return render_page(request, "training/review/review.html", "training/review/_card.html", context, status=status)
    if error:
        context = _page_context(request, review_filter, current_pk=current_pk, error=error, reject_data=reject_data)
        return render_page(request, "training/review/review.html", None, context, status=status)
    if notice:
        messages.success(request, notice)
    query = review_filter.as_query()
    if current_pk is not None:
        query["image"] = str(current_pk)
    return redirect(f"{reverse('review')}?{urlencode(query)}")


@page_login_required
@require_POST
def review_action(request: HtmxHttpRequest, pk: int, action: str) -> HttpResponse:
    if action not in ACTIONS:
        raise Http404("No such review action")
    image = dataset_image_get_for_user(user=request.user, pk=pk, write=True)
    review_filter = review_filter_from(user=request.user, data=request.POST)
    session = ReviewSession(request.session)
    entry: dict[str, Any] = {"action": action, "image": image.pk, "state": review_state(image)}
    notice = ""
    reject_data = None
    try:
        if action == "approve":
            dataset_images_approve(image_ids=[image.pk], reviewer=signed_in(request.user))
            notice = f"Image #{image.pk} approved."
        elif action == "reject":
            categories = request.POST.getlist("category")
            note = request.POST.get("note", "")
            regenerate = request.POST.get("regenerate") in ("1", "on", "true")
            reject_data = {"categories": categories, "note": note, "regenerate": regenerate}
            dataset_images_reject(
                image_ids=[image.pk], categories=categories, note=note, reviewer=signed_in(request.user)
            )
            labels = ", ".join(CATEGORY_LABELS.get(c, c) for c in sorted(set(categories)))
            notice = f"Image #{image.pk} rejected ({labels})."
            if regenerate:
                try:
                    child = dataset_image_regenerate(image=image, user=signed_in(request.user))
                except CurationError as exc:
                    notice += f" Not regenerated: {exc}."
                else:
                    entry["job"] = child.pk
                    notice += f" Regenerating with the refined prompt as job {child.pk}."
        elif action == "skip":
            notice = f"Image #{image.pk} skipped."
        else:
            reference = dataset_image_promote(image=image, reviewer=signed_in(request.user))
            entry["reference"] = reference.pk
            notice = f"Image #{image.pk} is now a reference of {image.character.name}."
    except ValidationError as exc:
        return _answer(
            request, review_filter, error=" ".join(exc.messages), current_pk=image.pk, reject_data=reject_data
        )
    except CurationError as exc:
        return _answer(request, review_filter, error=str(exc), current_pk=image.pk, reject_data=reject_data)
    session.push(entry)
    return _answer(request, review_filter, notice=notice)


def _undo(request: HtmxHttpRequest, entry: dict[str, Any]) -> str:
    image = dataset_image_get_for_user(user=request.user, pk=entry["image"], write=True)
    if entry["action"] == "skip":
        return f"Image #{image.pk} is back in the queue."
    extra = ""
    if entry.get("reference"):
        reference = ReferenceImage.objects.filter(pk=entry["reference"], character_id=image.character_id).first()
        if reference is not None:
            reference_delete(reference=reference)
            extra = " The reference it became was removed."
    if entry.get("job"):
        job = Job.objects.filter(pk=entry["job"], project_id=image.character.project_id).first()
        if job is not None and job.status == JobStatus.QUEUED:
            try:
                job_cancel(job=job, user=signed_in(request.user))
            except JobError:
                extra = f" Regeneration job {job.pk} could not be cancelled any more."
            else:
                extra = f" Regeneration job {job.pk} was cancelled."
        elif job is not None:
            extra = f" Regeneration job {job.pk} had already started and was kept."
    dataset_image_restore(image_id=image.pk, state=entry["state"])
    return f"Undid the {entry['action']} of image #{image.pk}.{extra}"


@page_login_required
@require_POST
def review_undo(request: HtmxHttpRequest) -> HttpResponse:
    review_filter = review_filter_from(user=request.user, data=request.POST)
    session = ReviewSession(request.session)
    entry = session.peek()
    if entry is None:
        return _answer(request, review_filter, notice="Nothing to undo in this session.")
    try:
        notice = _undo(request, entry)
    except Http404:
        session.pop()  # the image is gone (or no longer visible): nothing left to undo for it
        return _answer(request, review_filter, notice=f"Image #{entry['image']} no longer exists; nothing undone.")
    except CurationError as exc:
        return _answer(request, review_filter, error=str(exc))
    session.pop()
    return _answer(request, review_filter, notice=notice, current_pk=entry["image"])


@page_login_required
@require_POST
def character_learned_negatives(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """Save the character page's learned-negatives editor: ``term: weight`` per line (0 removes)."""
    character = character_get_for_user(user=request.user, pk=pk, write=True)
    try:
        learned = parse_learned_negatives(request.POST.get("learned_negatives", ""))
        character_update(character=character, learned_negatives=learned)
    except (LearnedNegativesError, CharacterError) as exc:
        messages.error(request, f"Learned negatives not saved: {exc}")
    except ValidationError as exc:
        messages.error(request, f"Learned negatives not saved: {' '.join(exc.messages)}")
    else:
        messages.success(request, f"Learned negatives saved ({len(learned)} term{'s' if len(learned) != 1 else ''}).")
    return redirect(f"{reverse('character-detail', args=[character.pk])}#learned-negatives")
