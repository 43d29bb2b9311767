"""Quality pages: the gallery (every tile shows its current scores and verdict) and a job's scores."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import push_url

from characters.models import Character
from generation.selectors import job_get_for_user
from projects.selectors import project_user_can_write
from quality.forms import ScoredGalleryFilterForm
from quality.selectors import asset_inspect, asset_neighbours, gallery_assets, job_quality
from tower.core.pages import (
    HtmxHttpRequest,
    page_login_required,
    paginate_uncounted,
    querystring_without_page,
    render_page,
)

GALLERY_PAGE_SIZE = 48


@page_login_required
@require_GET
def gallery(request: HtmxHttpRequest) -> HttpResponse:
    form = ScoredGalleryFilterForm(request.GET or None, user=request.user)
    assets = gallery_assets(user=request.user, **form.selector_kwargs())
    page_obj = paginate_uncounted(request, assets, per_page=GALLERY_PAGE_SIZE)
    context = {
        "section": "gallery",
        "form": form,
        "page_obj": page_obj,
        "querystring_base": querystring_without_page(request),
    }
    response = render_page(request, "quality/gallery.html", "quality/_gallery_grid.html", context)
    if request.htmx and not request.htmx.history_restore_request:
        # The address of exactly this grid (from the request the grid answers, not the form's
        # state when htmx pushes), so Back, reload and bookmarks give the grid shown.
        push_url(response, gallery_url(request))
    return response


def gallery_url(request: HtmxHttpRequest) -> str:
    """The gallery's address for the request's filters, empty ones left out."""
    pairs = [(key, value) for key, value in request.GET.items() if value != ""]
    return reverse("gallery") + (f"?{urlencode(pairs)}" if pairs else "")


@page_login_required
@require_GET
def asset_detail(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """One output: the page of its own, or (HTMX) the lightbox's body. It lives here, not in
    generation, because it shows scores and the verdict."""
    inspection = asset_inspect(user=request.user, pk=pk)
    asset = inspection.asset
    can_write = project_user_can_write(project=asset.project, user=request.user)
    characters = list(Character.objects.filter(project_id=asset.project_id).only("pk", "name")) if can_write else []
    context = {"section": "gallery", "asset": asset, "inspection": inspection, "dataset_characters": characters}
    # The page of its own moves through the gallery's order (the lightbox through the tiles shown).
    context["newer"], context["older"] = asset_neighbours(user=request.user, asset=asset)
    return render_page(request, "generation/asset_detail.html", "generation/_asset_view.html", context)


@page_login_required
@require_GET
def job_quality_panel(request: HtmxHttpRequest, pk: int) -> HttpResponse:
    """The job page loads this panel by HTMX; without JS its link opens it as a page of its own."""
    job = job_get_for_user(user=request.user, pk=pk)
    context = {"section": "jobs", "job": job, "quality": job_quality(job=job)}
    return render_page(request, "quality/job_quality.html", "quality/_job_quality.html", context)
