"""Page plumbing every app's HTML views share.

Views are plain functions: one serves the full page and, for an HTMX request, only the fragment
the request targets (``request.htmx``). Access goes through each entity's selector, so an
outsider gets the same 404 as for a missing row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Page, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse_lazy
from django_htmx.middleware import HtmxDetails

PAGE_SIZE = 25


class HtmxHttpRequest(HttpRequest):
    """The type of a view's request: HtmxMiddleware sets ``htmx`` on every one."""

    htmx: HtmxDetails


page_login_required: Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]] = login_required(
    login_url=reverse_lazy("login")
)


def paginate(request: HttpRequest, queryset: QuerySet[Any], *, per_page: int = PAGE_SIZE) -> Page:
    """The requested page (the last one for a page number past the end, the first for garbage)."""
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


class UncountedPaginator(Paginator):
    """Pages of a list too large to count on every view (the gallery at 100,000 outputs): a page
    reads one row past its end to know whether another follows; the page count is not known."""

    uncounted = True

    def validate_number(self, number: Any) -> int:
        try:
            value = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if value < 1:
            raise PageNotAnInteger("That page number is less than 1")
        return value

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        # What is known: the rows so far, one more when a next page follows (num_pages follows).
        self.count = bottom + len(rows)
        return Page(rows[: self.per_page], number, self)


def paginate_uncounted(request: HttpRequest, queryset: QuerySet[Any], *, per_page: int = PAGE_SIZE) -> Page:
    """The requested page without counting the rows (the first for garbage, empty past the end)."""
    return UncountedPaginator(queryset, per_page).get_page(request.GET.get("page"))


def querystring_without_page(request: HttpRequest) -> str:
    """The current filters as ``a=1&b=2&`` (ready for ``page=N`` to be appended)."""
    pairs = [(k, v) for k, v in request.GET.items() if k != "page" and v != ""]
    return urlencode(pairs) + "&" if pairs else ""


def render_page(
    request: HttpRequest, template: str, fragment: str | None, context: dict[str, Any], *, status: int = 200
) -> HttpResponse:
    """The full page, or only ``fragment`` for an HTMX request (history-restore asks for the page)."""
    htmx: HtmxDetails = request.htmx  # type: ignore[attr-defined]  # set by HtmxMiddleware on every request
    if fragment is not None and htmx and not htmx.history_restore_request:
        template = fragment
    return render(request, template, context, status=status)


def form_add_service_errors(form: Any, exc: Exception) -> None:
    """Put a service's ValidationError (or domain error) on the form: by field where it names one."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            target = field if field in form.fields else None
            for error in errors:
                message = " ".join(error.messages)
                form.add_error(target, message if target else f"{field}: {message}" if field != "__all__" else message)
        return
    messages = exc.messages if isinstance(exc, ValidationError) else [str(exc)]
    for message in messages:
        form.add_error(None, message)
