from __future__ import annotations

from django.urls import path

from training.llm import views

urlpatterns = [
    path("characters/<int:pk>/captions/", views.character_captions, name="character-captions"),
    path("characters/<int:pk>/captions/run/", views.caption_run_status, name="character-captions-run"),
    path("characters/<int:pk>/captions/auto/", views.captions_auto, name="character-captions-auto"),
    path("characters/<int:pk>/captions/bulk/", views.captions_bulk, name="character-captions-bulk"),
    path("characters/<int:pk>/captions/replace/", views.captions_replace, name="character-captions-replace"),
    path("characters/<int:pk>/captions/undo/", views.captions_undo, name="character-captions-undo"),
    path("characters/<int:pk>/captions/classify/", views.classify_again, name="character-captions-classify"),
    path("dataset-images/<int:pk>/caption/", views.caption_save, name="dataset-image-caption"),
]
