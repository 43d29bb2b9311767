"""The studio's HTML pages (the REST API lives under /api/, the admin under /admin/)."""

from __future__ import annotations

from django.urls import include, path

from characters import views as character_views
from generation import backend_views, generate_views, job_views, template_views
from quality import movie_scene_views, movie_views, orchestration_views, scoring_models_views
from quality import views as quality_views
from tower import project_views, views
from training import views as training_views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("projects/", project_views.project_list, name="project-list"),
    path("projects/new/", project_views.project_create_view, name="project-create"),
    path("projects/examples/", project_views.project_examples_create, name="project-examples"),
    path("projects/<int:pk>/", project_views.project_detail, name="project-detail"),
    path("projects/<int:pk>/style/", project_views.project_style, name="project-style"),
    path("projects/<int:pk>/bible/", project_views.project_bible, name="project-bible"),
    path("projects/<int:pk>/characters/new/", character_views.character_create_view, name="character-create"),
    path("characters/", character_views.character_list, name="character-list"),
    path("characters/<int:pk>/", character_views.character_detail, name="character-detail"),
    path("characters/<int:pk>/references/", character_views.reference_add, name="character-reference-add"),
    path("characters/<int:pk>/palette/", character_views.palette_use_suggestion, name="character-palette-use"),
    path("characters/<int:pk>/versions/", character_views.version_add, name="character-version-add"),
    path("versions/<int:pk>/states/", character_views.version_states, name="character-version-states"),
    path("characters/<int:pk>/variations/", character_views.variation_add, name="character-variation-add"),
    path("characters/<int:pk>/preview/", generate_views.character_preview, name="character-preview"),
    path("generate/", generate_views.generate, name="generate"),
    path("templates/", template_views.template_list, name="template-list"),
    path("templates/<int:pk>/", template_views.template_detail, name="template-detail"),
    path("jobs/", job_views.job_list, name="job-list"),
    path("jobs/<int:pk>/", job_views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/quality/", quality_views.job_quality_panel, name="job-quality"),
    path("jobs/<int:pk>/thumb/", job_views.job_thumb, name="job-thumb"),
    path("jobs/<int:pk>/workflow.json", job_views.job_workflow_json, name="job-workflow-json"),
    path("jobs/<int:pk>/<str:action>/", job_views.job_action, name="job-action"),
    path("gallery/", quality_views.gallery, name="gallery"),
    path("orchestrations/", orchestration_views.orchestration_list, name="orchestration-list"),
    path("orchestrations/<int:pk>/", orchestration_views.orchestration_detail, name="orchestration-detail"),
    path(
        "orchestrations/<int:pk>/<str:action>/", orchestration_views.orchestration_action, name="orchestration-action"
    ),
    path("characters/<int:pk>/orchestrate/", orchestration_views.orchestration_start_view, name="orchestration-start"),
    path("projects/<int:pk>/episodes/new/", movie_views.episode_create_view, name="episode-create"),
    path("episodes/<int:pk>/", movie_views.episode_detail, name="episode-detail"),
    path("episodes/<int:pk>/scenes/", movie_views.episode_scene_add, name="episode-scene-add"),
    path("episodes/<int:pk>/reorder/", movie_views.episode_reorder, name="episode-reorder"),
    path("episodes/<int:pk>/assemble/", movie_views.episode_assemble, name="episode-assemble"),
    path("scenes/<int:pk>/", movie_scene_views.scene_detail, name="scene-detail"),
    path("scenes/<int:pk>/edit/", movie_views.scene_edit_view, name="scene-edit"),
    path("scenes/<int:pk>/move/", movie_views.scene_move_view, name="scene-move"),
    path("scenes/<int:pk>/delete/", movie_views.scene_delete_view, name="scene-delete"),
    path("scenes/<int:pk>/generate/", movie_scene_views.scene_generate_view, name="scene-generate"),
    path("scenes/<int:pk>/memory/", movie_scene_views.scene_memory, name="scene-memory"),
    path("segments/<int:pk>/retry/", movie_scene_views.segment_retry, name="segment-retry"),
    path("backends/", backend_views.backend_list, name="backend-list"),
    path("backends/new/", backend_views.backend_edit, name="backend-create"),
    path("backends/<int:pk>/", backend_views.backend_edit, name="backend-edit"),
    path("backends/<int:pk>/<str:action>/", backend_views.backend_action, name="backend-action"),
    path("scoring-models/", scoring_models_views.scoring_models_panel, name="scoring-models"),
    path("assets/<int:pk>/", quality_views.asset_detail, name="asset-detail"),
    path("assets/<int:pk>/thumb/", job_views.asset_thumb, name="asset-thumb"),
    path("assets/<int:pk>/add-to-dataset/", training_views.asset_add_to_dataset, name="asset-add-to-dataset"),
    path("", include("training.urls")),
]
