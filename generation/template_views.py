"""Workflow template pages: the list, and one template's bindings, style and node warnings."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from generation.selectors import templates_visible_to
from generation.services.templates import (
    template_binding_rows,
    template_follows_style,
    template_node_warnings,
)
from tower.core.pages import page_login_required, render_page


@page_login_required
@require_GET
def template_list(request: HttpRequest) -> HttpResponse:
    templates = list(templates_visible_to(request.user).select_related("project").order_by("project_id", "name"))
    rows = [{"template": t, "follows_style": template_follows_style(template=t)} for t in templates]
    context = {"section": "templates", "rows": rows}
    return render_page(request, "generation/templates.html", None, context)


@page_login_required
@require_GET
def template_detail(request: HttpRequest, pk: int) -> HttpResponse:
    template = get_object_or_404(templates_visible_to(request.user).select_related("project"), pk=pk)
    context = {
        "section": "templates",
        "template": template,
        "bindings": template_binding_rows(template=template),
        "follows_style": template_follows_style(template=template),
        "warnings": template_node_warnings(template=template),
    }
    return render_page(request, "generation/template_detail.html", None, context)
