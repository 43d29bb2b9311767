"""Error answers outside the REST views: JSON under ``/api/``, Django's pages (our 4xx/5xx templates) elsewhere.

URL-resolver 404s (``/api/v1/projects/1.5/``), a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` and a
crash never reach DRF's exception handler, so without these an API client got an HTML page. The
JSON shape is DRF's: ``{"detail": "..."}``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils.html import format_html
from django.views import defaults


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):.0f} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def too_big_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0
    return (
        f"the request body is larger than the limit of {_size(limit)}; "
        "send files as multipart uploads or split the request"
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        if is_api(request):
            return JsonResponse({"detail": too_big_message()}, status=413)
        return HttpResponse(too_big_message(), status=413, content_type="text/plain; charset=utf-8")
    if is_api(request):
        if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
            return JsonResponse({"detail": "the request has too many fields or files"}, status=400)
        return JsonResponse({"detail": "bad request"}, status=400)
    return defaults.bad_request(request, exception)  # type: ignore[arg-type]  # Django passes None at times too


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    reason = str(exception or "") or "You do not have permission to do this."
    if is_api(request):
        return JsonResponse({"detail": reason}, status=403)
    try:
        get_template("403.html")
    except TemplateDoesNotExist:
        # Django's built-in 403 page drops the reason ("read-only access" is the useful part).
        return HttpResponseForbidden(format_html("<h1>403 Forbidden</h1><p>{}</p>", reason))
    return defaults.permission_denied(request, exception)  # type: ignore[arg-type]  # Django passes None at times too


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        return JsonResponse({"detail": "server error: the failure has been logged"}, status=500)
    return defaults.server_error(request)
