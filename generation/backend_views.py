"""Backend pages (staff): list, add or edit, check, enable and disable."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generation.forms import BackendForm
from generation.models import Backend
from generation.selectors import backends_user_can_manage
from generation.services.backends import (
    BackendError,
    backend_check,
    backend_create,
    backend_update,
    backends_set_enabled,
)
from tower.core.pages import form_add_service_errors, page_login_required, render_page


def _staff_only(request: HttpRequest) -> None:
    if not backends_user_can_manage(request.user):
        raise PermissionDenied("Only staff manage ComfyUI backends")


@page_login_required
@require_GET
def backend_list(request: HttpRequest) -> HttpResponse:
    _staff_only(request)
    context = {"section": "dashboard", "backends": list(Backend.objects.order_by("name"))}
    return render_page(request, "generation/backends.html", None, context)


@page_login_required
@require_http_methods(["GET", "POST"])
def backend_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Add a backend (no ``pk``) or edit one; either is checked at once when saved."""
    _staff_only(request)
    backend = get_object_or_404(Backend, pk=pk) if pk is not None else None
    form = BackendForm(request.POST or None, instance=backend)
    if request.method == "POST" and form.is_valid():
        try:
            if backend is None:
                backend = backend_create(**form.cleaned_data)
            else:
                backend = backend_update(backend=Backend.objects.get(pk=backend.pk), **form.cleaned_data)
        except (BackendError, ValidationError) as exc:
            form_add_service_errors(form, exc)
        else:
            backend.refresh_from_db()
            _say_health(request, backend)
            return redirect("backend-list")
    context = {"section": "dashboard", "form": form, "backend": backend}
    return render_page(request, "generation/backend_form.html", None, context, status=400 if form.errors else 200)


@page_login_required
@require_POST
def backend_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """``check`` (poll it now), ``enable`` or ``disable``."""
    _staff_only(request)
    backend = get_object_or_404(Backend, pk=pk)
    if action == "check":
        backend_check(backend_id=backend.pk)
    elif action in ("enable", "disable"):
        backends_set_enabled(backend_ids=[backend.pk], enabled=action == "enable")
    else:
        raise Http404("No such action")
    backend.refresh_from_db()
    _say_health(request, backend)
    return redirect("backend-list")


def _say_health(request: HttpRequest, backend: Backend) -> None:
    if not backend.enabled:
        messages.info(request, f"{backend.name} is disabled: it gets no new work.")
    elif backend.healthy:
        version = f" (ComfyUI {backend.comfyui_version})" if backend.comfyui_version else ""
        messages.success(request, f"{backend.name} is reachable{version}.")
    else:
        messages.error(request, f"{backend.name} is down: {backend.last_error or 'no answer'}")
