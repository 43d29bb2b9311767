"""REST API v1 under ``/api/v1/``, its OpenAPI schema and docs (all for signed-in users only)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import IsAuthenticated

urlpatterns = [
    path("v1/", include("tower.api_v1")),
    path(
        "schema/",
        SpectacularAPIView.as_view(permission_classes=[IsAuthenticated]),
        name="api-schema",
    ),
    # The docs page is for people: a signed-out browser is sent to the login page. Its assets are
    # served locally (drf-spectacular-sidecar). No ReDoc page: its template loads Google Fonts.
    # The split view serves its start-up script as a file: the page has no inline script (CSP).
    # api/docs.html adds the studio's dark look and a way back to it.
    path(
        "docs/",
        login_required(SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/docs.html")),
        name="api-docs",
    ),
]
