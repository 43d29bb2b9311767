"""Ingestion: uploads, zip archives, videos, URLs (yt-dlp) and ComfyUI output folders → dataset images."""

from __future__ import annotations

from django.urls import path

from training.ingest import views

urlpatterns = [
    path("ingest/", views.ingest, name="ingest"),
    path("ingest/<int:pk>/", views.ingest_batch, name="ingest-batch"),
    path("ingest/held/<int:pk>/", views.held_image_action, name="ingest-held-action"),
]
