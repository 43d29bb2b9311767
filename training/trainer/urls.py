"""Training: kohya sd-scripts jobs in a queue per GPU, progress, and the LoRA registry."""

from __future__ import annotations

from django.urls import path, re_path

from training.trainer import views

urlpatterns = [
    path("characters/<int:pk>/training/", views.character_training, name="character-training"),
    path("training/<int:pk>/", views.training_job_detail, name="training-job"),
    path("training/<int:pk>/cancel/", views.training_job_cancel_view, name="training-job-cancel"),
    re_path(
        r"^loras/(?P<pk>\d+)/(?P<action>activate|deactivate|add-to-style|remove-from-style|deploy)/$",
        views.lora_action,
        name="lora-action",
    ),
]
