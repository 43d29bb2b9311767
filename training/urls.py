"""Curation and training pages; each area keeps its own url module."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("training.ingest.urls")),
    path("", include("training.llm.urls")),
    path("", include("training.review.urls")),
    path("", include("training.trainer.urls")),
]
