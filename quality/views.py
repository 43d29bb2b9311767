"""Quality pages: the gallery (every tile shows its current scores and verdict) and a job's scores."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from quality.forms import ScoredGalleryFilterForm
from quality.selectors import gallery_assets, job_get_for_user, job_quality
from tower.views import page_login_required, paginate, querystring_without_page, render_page

GALLERY_PAGE_SIZE = 48


@page_login_required
@require_GET
def gallery(request: HttpRequest) -> HttpResponse:
    form = ScoredGalleryFilterForm(request.GET or None, user=request.user)
    assets = gallery_assets(user=request.user, **form.selector_kwargs())
    context = {
        "section": "gallery",
        "form": form,
        "page_obj": paginate(request, assets, per_page=GALLERY_PAGE_SIZE),
        "querystring_base": querystring_without_page(request),
    }
    return render_page(request, "quality/gallery.html", "quality/_gallery_grid.html", context)


@page_login_required
@require_GET
def job_quality_panel(request: HttpRequest, pk: int) -> HttpResponse:
    """The job page loads this panel by HTMX; without JS its link opens it as a page of its own."""
    job = job_get_for_user(user=request.user, pk=pk)
    context = {"section": "jobs", "job": job, "quality": job_quality(job=job)}
    return render_page(request, "quality/job_quality.html", "quality/_job_quality.html", context)
