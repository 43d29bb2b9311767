"""Curation pages. For now: adding one of Tower's outputs to a character's dataset."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from characters.selectors import characters_visible_to
from generation.selectors import assets_visible_to
from projects.selectors import project_get_for_user
from tower.core.pages import page_login_required
from tower.core.users import signed_in
from training.services import CurationError, dataset_image_add_from_asset


@page_login_required
@require_POST
def asset_add_to_dataset(request: HttpRequest, pk: int) -> HttpResponse:
    asset = get_object_or_404(assets_visible_to(request.user).select_related("job"), pk=pk)
    project_get_for_user(user=request.user, pk=asset.project_id, write=True)
    character = get_object_or_404(
        characters_visible_to(request.user).filter(project_id=asset.project_id), pk=request.POST.get("character") or 0
    )
    try:
        image = dataset_image_add_from_asset(asset=asset, character=character, user=signed_in(request.user))
    except CurationError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Added to {character.name}'s dataset as image #{image.pk}, pending review.")
    return redirect("asset-detail", pk=asset.pk)
