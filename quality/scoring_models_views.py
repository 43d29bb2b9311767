"""The scoring models' card (``templates/quality/_model_fetch.html``), polled while they download."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from tower.core.pages import page_login_required


@page_login_required
@require_GET
def scoring_models_panel(request: HttpRequest) -> HttpResponse:
    """The card on its own: the dashboard polls it every 2 s while a download runs, then stops."""
    return render(request, "quality/_model_fetch.html")
