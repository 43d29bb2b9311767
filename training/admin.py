from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter, helpers
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils.html import format_html

from generation.models import Asset, Job
from projects.admin_scope import ProjectScopedAdmin
from tower.core.admin import PREVIEW_PX, ReadOnlyAdminMixin, admin_link, pretty_json, thumbnail
from tower.core.thumbnails import AdminThumbnailMixin
from training.ingest.services import held_image_discard
from training.models import (
    CaptionRun,
    DatasetImage,
    HeldImage,
    IngestBatch,
    LoraModel,
    RejectionCategory,
    TrainingJob,
)
from training.review.services import dataset_image_promote, dataset_image_regenerate
from training.services import CurationError, dataset_images_approve, dataset_images_reject, dataset_images_reset

REJECT_PREVIEW_LIMIT = 24
CATEGORY_LABELS = dict(RejectionCategory.choices)


class RejectionCategoryFilter(admin.SimpleListFilter):
    title = "rejected for"
    parameter_name = "category"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return list(RejectionCategory.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[DatasetImage]) -> QuerySet[DatasetImage]:
        value = self.value()
        if value not in RejectionCategory.values:
            return queryset
        # The categories are stored as a JSON list of strings; match one quoted member. (This works on
        # SQLite, which has no JSON containment, and on PostgreSQL alike.)
        return queryset.filter(rejection_categories__icontains=f'"{value}"')


class ClassificationFilter(admin.SimpleListFilter):
    """Where the classifier disagrees with the character an image was filed under: the likeliest mistakes."""

    title = "classification"
    parameter_name = "classified"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("disagrees", "Disagrees with the character"), ("agrees", "Agrees"), ("none", "Not classified")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[DatasetImage]) -> QuerySet[DatasetImage]:
        if self.value() == "disagrees":
            return queryset.filter(classified_character__isnull=False).exclude(classified_character=F("character"))
        if self.value() == "agrees":
            return queryset.filter(classified_character=F("character"))
        if self.value() == "none":
            return queryset.filter(classified_character__isnull=True)
        return queryset


class RejectForm(forms.Form):
    """The rules (at least one category, a note with "other") are the service's; see the action."""

    categories = forms.MultipleChoiceField(
        choices=RejectionCategory.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        required=False,
        help_text="What is wrong; required with “Other”.",
    )
    regenerate = forms.BooleanField(
        required=False,
        label="Regenerate with the refined prompt",
        help_text="For images Tower generated: queue the job again with the new learned negatives (bounded).",
    )


@admin.register(DatasetImage)
class DatasetImageAdmin(AdminThumbnailMixin, ProjectScopedAdmin):
    """The curation queue: approve, reject with categories, or send back to pending."""

    project_lookup = "character__project"
    list_display = [
        "thumb",
        "id",
        "character",
        "status",
        "categories",
        "source",
        "classification",
        "reviewed_by",
        "created_at",
    ]
    list_display_links = ["thumb", "id"]
    list_select_related = ["character", "classified_character", "reviewed_by"]
    list_filter = [
        "status",
        RejectionCategoryFilter,
        ClassificationFilter,
        "source",
        ("character__project", RelatedOnlyFieldListFilter),
        ("character", RelatedOnlyFieldListFilter),
    ]
    search_fields = ["=id", "=sha256", "caption", "source_ref", "character__name"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    autocomplete_fields = ["character"]
    actions = ["approve", "reject", "reset_to_pending", "promote_to_references", "regenerate"]
    fieldsets = [
        (None, {"fields": ["preview", "character", "caption"]}),
        (
            "Review (through the actions)",
            {"fields": ["status", "categories", "rejection_note", "reviewed_by", "reviewed_at"]},
        ),
        (
            "Origin",
            {
                "fields": [
                    "source",
                    "source_ref",
                    "origin_job_link",
                    "origin_asset_link",
                    "classified_character",
                    "classification_confidence",
                ]
            },
        ),
        ("File", {"fields": [("width", "height"), "sha256", "phash", "created_at"]}),
    ]
    readonly_fields = [
        "preview",
        "status",
        "categories",
        "rejection_note",
        "reviewed_by",
        "reviewed_at",
        "source",
        "source_ref",
        "origin_job_link",
        "origin_asset_link",
        "classified_character",
        "classification_confidence",
        "width",
        "height",
        "sha256",
        "phash",
        "created_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # images arrive through ingestion, which de-duplicates and hashes them

    @admin.display(description="image")
    def thumb(self, obj: DatasetImage) -> str:
        return self.thumbnail_cell(obj, alt=f"dataset image {obj.pk}")

    @admin.display(description="image")
    def preview(self, obj: DatasetImage) -> str:
        return thumbnail(obj.image, alt=f"dataset image {obj.pk}", size=PREVIEW_PX)

    @admin.display(description="rejected for")
    def categories(self, obj: DatasetImage) -> str:
        labels = [CATEGORY_LABELS.get(c, c) for c in obj.rejection_categories or []]
        return ", ".join(labels) or "—"

    @admin.display(description="classified as")
    def classification(self, obj: DatasetImage) -> str:
        if obj.classified_character is None:
            return "—"
        confidence = obj.classification_confidence
        suffix = f" ({confidence:.0%})" if confidence is not None else ""
        return f"{obj.classified_character.name}{suffix}"

    @admin.display(description="origin job")
    def origin_job_link(self, obj: DatasetImage) -> str:
        return admin_link(Job, obj.origin_job_id)

    @admin.display(description="origin asset")
    def origin_asset_link(self, obj: DatasetImage) -> str:
        return admin_link(Asset, obj.origin_asset_id)

    @admin.action(description="Approve the selected images", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[DatasetImage]) -> None:
        ids, skipped = self.writable_ids(request, queryset)
        count = dataset_images_approve(image_ids=ids, reviewer=request.user)
        self.message_user(request, f"{count} image(s) approved.", messages.SUCCESS)
        self.report_skipped(request, skipped)

    @admin.action(description="Send the selected images back to pending", permissions=["change"])
    def reset_to_pending(self, request: HttpRequest, queryset: QuerySet[DatasetImage]) -> None:
        ids, skipped = self.writable_ids(request, queryset)
        count = dataset_images_reset(image_ids=ids)
        self.message_user(request, f"{count} image(s) back to pending.", messages.SUCCESS)
        self.report_skipped(request, skipped)

    @admin.action(description="Reject the selected images (choose categories)…", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[DatasetImage]) -> TemplateResponse | None:
        """First call: a confirmation page asking for categories. Its form posts back here with
        ``apply``; the service refuses a rejection without a category, or "other" without a note,
        and the page is shown again with the error and nothing changed."""
        if "apply" in request.POST:
            form = RejectForm(request.POST)
            if form.is_valid():
                ids, skipped = self.writable_ids(request, queryset)
                try:
                    count = dataset_images_reject(
                        image_ids=ids,
                        categories=form.cleaned_data["categories"],
                        note=form.cleaned_data["note"],
                        reviewer=request.user,
                    )
                except ValidationError as exc:
                    form.add_error(None, exc)
                else:
                    labels = ", ".join(CATEGORY_LABELS[c] for c in form.cleaned_data["categories"])
                    self.message_user(request, f"{count} image(s) rejected ({labels}).", messages.SUCCESS)
                    self.report_skipped(request, skipped)
                    if form.cleaned_data["regenerate"]:
                        self._regenerate(request, ids)
                    return None
        else:
            form = RejectForm()
        selected = list(queryset.select_related("character").order_by("pk"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Reject dataset images",
            "opts": self.model._meta,
            "form": form,
            "selected": selected,
            "previews": [
                (obj, self.thumbnail_cell(obj, alt=f"dataset image {obj.pk}"))
                for obj in selected[:REJECT_PREVIEW_LIMIT]
            ],
            "hidden_count": max(0, len(selected) - REJECT_PREVIEW_LIMIT),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "action_name": "reject",
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/training/datasetimage/reject_confirmation.html", context)

    def _regenerate(self, request: HttpRequest, ids: list[int]) -> None:
        queued, refused = [], []
        images = DatasetImage.objects.filter(pk__in=ids).order_by("pk")
        for image in images:
            try:
                child = dataset_image_regenerate(image=image, user=request.user)
            except CurationError as exc:
                refused.append(f"#{image.pk}: {exc}")
            else:
                queued.append(f"#{image.pk} → job {child.pk}")
        if queued:
            self.message_user(request, f"Regenerating with the refined prompt: {', '.join(queued)}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not regenerated: {'; '.join(refused)}.", messages.WARNING)

    @admin.action(description="Regenerate the selected rejected images with the refined prompt", permissions=["change"])
    def regenerate(self, request: HttpRequest, queryset: QuerySet[DatasetImage]) -> None:
        ids, skipped = self.writable_ids(request, queryset)
        self._regenerate(request, ids)
        self.report_skipped(request, skipped)

    @admin.action(description="Promote the selected images to their character's references", permissions=["change"])
    def promote_to_references(self, request: HttpRequest, queryset: QuerySet[DatasetImage]) -> None:
        """Pending images are approved on the way; rejected ones and duplicates are refused, each named."""
        ids, skipped = self.writable_ids(request, queryset)
        promoted, refused = 0, []
        for image in DatasetImage.objects.filter(pk__in=ids).order_by("pk"):
            try:
                dataset_image_promote(image=image, reviewer=request.user)
            except CurationError as exc:
                refused.append(f"#{image.pk}: {exc}")
            else:
                promoted += 1
        self.message_user(request, f"{promoted} image(s) promoted to references.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not promoted: {'; '.join(refused)}.", messages.WARNING)
        self.report_skipped(request, skipped)


# --- Training and LoRAs --------------------------------------------------------------------------


TRAINING_FIELDSETS = [
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
    fieldsets = TRAINING_FIELDSETS
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
        cleaned = super().clean()
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
    readonly_fields = [
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
    ]
    fields = readonly_fields

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
    readonly_fields = [
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
    ]
    fields = readonly_fields

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
    fields = ["batch", "reason", "note", "character", "duplicate_of", "source", "source_ref", "created_at"]
    readonly_fields = fields

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
