from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tower import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health", health.health_view, name="health"),
    path("api/", include("tower.api_urls")),
]
