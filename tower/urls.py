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

# JSON under /api/, the studio's pages elsewhere (tower.core.error_pages).
handler400 = "tower.core.error_pages.bad_request"
handler403 = "tower.core.error_pages.permission_denied"
handler404 = "tower.core.error_pages.page_not_found"
handler500 = "tower.core.error_pages.server_error"
