"""Training jobs, LoRAs, ingest batches, caption runs and held images in the admin.

Dataset images (the curation queue) are in ``training.review.admin``, registered by importing it here.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from projects.admin_scope import ProjectScopedAdmin
from tower.core.admin import ReadOnlyAdminMixin, admin_link, pretty_json
from tower.core.thumbnails import AdminThumbnailMixin
from training.ingest.services import held_image_discard
from training.models import CaptionRun, HeldImage, IngestBatch, LoraModel, TrainingJob
from training.review import admin as review_admin  # noqa: F401  (registers the dataset-image admin)

TRAINING_FIELDSETS: list[tuple[str | None, dict[str, Any]]] = [
    (None, {"fields": ["character", "status", "base_model", "created_by", "created_at"]}),
    (
        "Progress (reported by the trainer)",
        {
            "fields": [
                "progress",
                ("step", "total_steps"),
                ("epoch", "total_epochs"),
                "loss",
                "it_per_second",
                "eta_seconds",
                "started_at",
                "finished_at",
                "error_message",
            ]
        },
    ),
    ("Inputs", {"classes": ["collapse"], "fields": ["config_json", "snapshot_size", "work_dir"]}),
    ("Log", {"classes": ["collapse"], "fields": ["log_text"]}),
]


@admin.register(TrainingJob)
class TrainingJobAdmin(ProjectScopedAdmin):
    """A record of a training run; status and progress are written by the trainer supervisor."""

    project_lookup = "character__project"
    list_display = ["__str__", "character", "status", "progress", "loss", "eta_seconds", "created_at", "finished_at"]
    list_select_related = ["character"]
    list_filter = ["status", ("character__project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "character__name", "base_model"]
    date_hierarchy = "created_at"
    fieldsets = TRAINING_FIELDSETS  # type: ignore[assignment]  # plain dicts; the stubs type the options as a TypedDict
    readonly_fields = [
        name
        for _, opts in TRAINING_FIELDSETS
        for item in opts["fields"]
        for name in (item if isinstance(item, tuple) else (item,))
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a run starts from a dataset snapshot taken by the training service

    @admin.display(description="progress")
    def progress(self, obj: TrainingJob) -> str:
        if obj.total_steps:
            return f"{obj.step}/{obj.total_steps} ({obj.step / obj.total_steps:.0%})"
        return str(obj.step) if obj.step else "—"

    @admin.display(description="trainer config")
    def config_json(self, obj: TrainingJob) -> str:
        return pretty_json(obj.config)

    @admin.display(description="dataset images")
    def snapshot_size(self, obj: TrainingJob) -> int:
        return len(obj.dataset_snapshot or [])

    @admin.display(description="log")
    def log_text(self, obj: TrainingJob) -> str:
        if not obj.log:
            return "—"
        return format_html('<pre style="max-height:32em;overflow:auto;margin:0">{}</pre>', obj.log)


class LoraModelForm(forms.ModelForm):
    class Meta:
        model = LoraModel
        fields = ["project", "character", "name", "trigger_word", "base_model", "default_strength", "active"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        project, character = cleaned.get("project"), cleaned.get("character")
        if project and character and character.project_id != project.pk:
            self.add_error("character", f"{character.name} is not a character of {project.name}")
        return cleaned


@admin.register(LoraModel)
class LoraModelAdmin(ProjectScopedAdmin):
    project_lookup = "project"
    form = LoraModelForm
    list_display = [
        "name",
        "project",
        "character",
        "active",
        "default_strength",
        "size",
        "deployed_at",
        "created_at",
    ]
    list_select_related = ["project", "character"]
    list_filter = ["active", ("project", RelatedOnlyFieldListFilter)]
    search_fields = ["name", "trigger_word", "base_model", "=sha256"]
    autocomplete_fields = ["project", "character"]
    raw_id_fields = ["training_job"]
    # Files come from training runs or the deploy step, which hash and measure them.
    readonly_fields = ["training_job", "file", "sha256", "size", "deployed_at", "created_at"]
    fields = [
        "project",
        "character",
        "name",
        "trigger_word",
        "base_model",
        "default_strength",
        "active",
        "training_job",
        "file",
        "sha256",
        "size",
        "deployed_at",
        "created_at",
    ]

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj: LoraModel) -> str:
        return filesizeformat(obj.size_bytes) if obj.size_bytes else "—"


@admin.register(IngestBatch)
class IngestBatchAdmin(ProjectScopedAdmin):
    """An ingestion run and its report; started from the ingest page, so rows are read-only here."""

    project_lookup = "project"
    list_display = ["__str__", "project", "character", "source", "status", "progress", "created_at"]
    list_select_related = ["project", "character"]
    list_filter = ["status", "source", ("project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "source_ref"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = readonly_fields = (
        "project",
        "character",
        "source",
        "source_ref",
        "source_file",
        "options",
        "status",
        "stage",
        "progress_done",
        "progress_total",
        "report",
        "error_message",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a batch starts from an upload, a URL or a folder on the ingest page

    @admin.display(description="progress")
    def progress(self, obj: IngestBatch) -> str:
        if obj.progress_total:
            return f"{obj.progress_done}/{obj.progress_total}"
        return str(obj.progress_done) if obj.progress_done else "—"


@admin.register(CaptionRun)
class CaptionRunAdmin(ProjectScopedAdmin):
    """A bulk auto-captioning run; started on the captions page, so rows are read-only here."""

    project_lookup = "character__project"
    list_display = ["__str__", "character", "method", "status", "done", "total", "created_at"]
    list_select_related = ["character"]
    list_filter = ["status", "method", ("character__project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "character__name", "run_id"]
    show_full_result_count = False
    fields = readonly_fields = (
        "character",
        "run_id",
        "status",
        "method",
        "style",
        "statuses",
        "overwrite",
        "done",
        "total",
        "report",
        "error",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a run starts from the character's captions page


@admin.register(HeldImage)
class HeldImageAdmin(AdminThumbnailMixin, ReadOnlyAdminMixin, ProjectScopedAdmin):
    """Images ingestion kept aside (no character recognised, near-duplicates); they are assigned or
    kept anyway on the review page, so rows are read-only here (deleting one removes its files)."""

    project_lookup = "batch__project"
    list_display = ["thumb", "id", "reason", "character", "batch_link", "source_ref", "created_at"]
    list_display_links = ["thumb", "id"]
    list_select_related = ["character", "batch"]
    list_filter = ["reason", ("batch__project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "source_ref", "note"]
    show_full_result_count = False
    readonly_fields = fields = (
        "batch",
        "reason",
        "note",
        "character",
        "duplicate_of",
        "source",
        "source_ref",
        "created_at",
    )

    @admin.display(description="image")
    def thumb(self, obj: HeldImage) -> str:
        return self.thumbnail_cell(obj, alt=f"held image {obj.pk}")

    @admin.display(description="batch", ordering="batch_id")
    def batch_link(self, obj: HeldImage) -> str:
        return admin_link(IngestBatch, obj.batch_id, f"Ingest #{obj.batch_id}")

    def delete_model(self, request: HttpRequest, obj: HeldImage) -> None:
        held_image_discard(held=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[HeldImage]) -> None:
        for held in queryset:
            held_image_discard(held=held)
