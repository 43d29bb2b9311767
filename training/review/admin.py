"""The curation queue in the admin: approve, reject with categories, reset, promote or regenerate."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter, helpers
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from generation.models import Asset, Job
from projects.admin_scope import ProjectScopedAdmin
from tower.core.admin import PREVIEW_PX, admin_link, thumbnail
from tower.core.thumbnails import AdminThumbnailMixin
from tower.core.users import signed_in
from training.models import DatasetImage, RejectionCategory
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
        count = dataset_images_approve(image_ids=ids, reviewer=signed_in(request.user))
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
                        reviewer=signed_in(request.user),
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
                child = dataset_image_regenerate(image=image, user=signed_in(request.user))
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
                dataset_image_promote(image=image, reviewer=signed_in(request.user))
            except CurationError as exc:
                refused.append(f"#{image.pk}: {exc}")
            else:
                promoted += 1
        self.message_user(request, f"{promoted} image(s) promoted to references.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Not promoted: {'; '.join(refused)}.", messages.WARNING)
        self.report_skipped(request, skipped)
