from __future__ import annotations

from django.urls import URLPattern, path

from training.review import views

urlpatterns: list[URLPattern] = [
    path("review/", views.review, name="review"),
    path("review/undo/", views.review_undo, name="review-undo"),
    path("review/<int:pk>/<str:action>/", views.review_action, name="review-action"),
    path(
        "characters/<int:pk>/learned-negatives/",
        views.character_learned_negatives,
        name="character-learned-negatives",
    ),
]
