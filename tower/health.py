"""GET /api/health. (Filled in by the health work.)"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse


def health_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "unknown"}, status=503)
