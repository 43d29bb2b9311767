from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from tower import health, media

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health", health.health_view, name="health"),
    path("api/", include("tower.api_urls")),
    path("media/<path:path>", media.media_view, name="media"),
    path("", include("tower.page_urls")),
]

# JSON under /api/, the studio's pages elsewhere (tower.errors).
handler400 = "tower.errors.bad_request"
handler403 = "tower.errors.permission_denied"
handler404 = "tower.errors.page_not_found"
handler500 = "tower.errors.server_error"
