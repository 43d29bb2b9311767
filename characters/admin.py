from __future__ import annotations

import re
import struct
from collections import Counter
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Prefetch, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from characters.models import (
    Character,
    CharacterAttribute,
    CharacterVersion,
    ReferenceEmbedding,
    ReferenceImage,
    Variation,
)
from characters.services import (
    character_add_reference,
    character_delete,
    reference_delete,
    reference_set_primary,
    reference_update,
    version_delete,
)
from projects.admin_scope import ProjectScopedAdmin, ScopedInline
from tower.core.admin import PREVIEW_PX, ReadOnlyAdminMixin, ReadOnlyInline, pretty_json, thumbnail, thumbnail_url
from tower.core.thumbnails import AdminThumbnailMixin, admin_thumb_url

HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


def _reference_thumb(obj: ReferenceImage, size: int | None = None) -> str:
    """A list cell: the small thumbnail (made once by the admin's thumb view); a preview: the image."""
    if size:
        return thumbnail(obj.image, alt=f"{obj.character.name} reference", size=size)
    return thumbnail_url(admin_thumb_url(ReferenceImage, obj.pk), alt=f"{obj.character.name} reference")


# --- Character ---------------------------------------------------------------------------------


class ReferenceImageInline(ScopedInline, admin.TabularInline):
    """References are shown here; they are added on their own page, where the file is checked."""

    model = ReferenceImage
    extra = 0
    can_delete = False
    show_change_link = True
    fk_name = "character"
    fields = ["thumb", "version", "is_primary", "dimensions", "original_name", "note", "created_at"]
    readonly_fields = ["thumb", "version", "is_primary", "dimensions", "original_name", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="image")
    def thumb(self, obj: ReferenceImage) -> str:
        return _reference_thumb(obj)

    @admin.display(description="size")
    def dimensions(self, obj: ReferenceImage) -> str:
        return f"{obj.width}×{obj.height}"


class CharacterAttributeInline(ScopedInline, admin.TabularInline):
    """Structured traits, joined to the prompt by priority (highest first)."""

    model = CharacterAttribute
    extra = 0
    fields = ["type", "value", "prompt_tokens", "priority"]


class CharacterVersionInline(ScopedInline, admin.TabularInline):
    model = CharacterVersion
    extra = 0
    show_change_link = True
    fields = ["name", "slug", "age_state", "emotional_state", "order", "prompt_delta", "negative_delta"]
    prepopulated_fields = {"slug": ["name"]}


class VariationInline(ScopedInline, admin.TabularInline):
    model = Variation
    extra = 0
    show_change_link = True
    fields = ["kind", "name", "slug", "replaces", "prompt_delta", "negative_delta"]
    prepopulated_fields = {"slug": ["name"]}


class PrimaryReferenceFilter(admin.SimpleListFilter):
    title = "primary reference"
    parameter_name = "primary_ref"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Has one"), ("no", "Missing")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Character]) -> QuerySet[Character]:
        own_primary = {"references__is_primary": True, "references__version__isnull": True}
        if self.value() == "yes":
            return queryset.filter(**own_primary).distinct()
        if self.value() == "no":
            return queryset.exclude(pk__in=Character.objects.filter(**own_primary).values("pk"))
        return queryset


@admin.register(Character)
class CharacterAdmin(ProjectScopedAdmin):
    project_lookup = "project"
    inlines = [CharacterAttributeInline, ReferenceImageInline, CharacterVersionInline, VariationInline]
    list_display = [
        "name",
        "primary_thumb",
        "project",
        "trigger_word",
        "reference_count",
        "consistency_threshold",
        "palette_gated",
    ]
    list_select_related = ["project"]
    list_filter = [("project", RelatedOnlyFieldListFilter), PrimaryReferenceFilter, "palette_gated"]
    search_fields = ["name", "slug", "trigger_word", "project__name"]
    autocomplete_fields = ["project", "scenes"]
    prepopulated_fields = {"slug": ["name"]}
    # The palette is extracted from the references; it follows them.
    readonly_fields = ["palette_swatches", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["project", "name", "slug", "trigger_word"]}),
        ("Prompt", {"fields": ["design_prompt", "negative_prompt", "learned_negatives"]}),
        # The structured attributes are the inline below; the old JSON field is no longer read.
        ("Design", {"fields": ["palette_swatches", "bible", "scenes"]}),
        (
            "Consistency",
            {
                "fields": ["consistency_threshold", "palette_gated", "palette_threshold"],
                "description": "Empty thresholds follow the project's (threshold_similarity, threshold_palette).",
            },
        ),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Character]:
        primary = ReferenceImage.objects.filter(is_primary=True, version__isnull=True)
        return (
            super()
            .get_queryset(request)
            .annotate(reference_count=Count("references"))
            .prefetch_related(Prefetch("references", queryset=primary, to_attr="primary_references"))
        )

    def delete_model(self, request: HttpRequest, obj: Character) -> None:
        character_delete(character=obj)  # removes the reference files too

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Character]) -> None:
        with transaction.atomic():
            for character in queryset:
                character_delete(character=character)

    @admin.display(description="primary")
    def primary_thumb(self, obj: Character) -> str:
        refs = getattr(obj, "primary_references", None)
        if not refs:
            return "—"
        return thumbnail_url(admin_thumb_url(ReferenceImage, refs[0].pk), alt=f"{obj.name} reference", size=64)

    @admin.display(description="references", ordering="reference_count")
    def reference_count(self, obj: Character) -> int:
        return obj.reference_count  # type: ignore[attr-defined]  # annotated by get_queryset (Count)

    @admin.display(description="palette")
    def palette_swatches(self, obj: Character) -> str:
        # Only well-formed colours reach the style attribute (escaping alone would still allow CSS).
        colours = [c for c in obj.palette or [] if isinstance(c, str) and HEX_COLOUR.fullmatch(c)]
        if not colours:
            return "—"
        return format_html_join(
            "",
            '<span title="{0}" style="display:inline-block;width:1.5em;height:1.5em;'
            'margin-right:2px;border:1px solid #8888;background:{0}"></span>',
            ((c,) for c in colours),
        )


# --- References --------------------------------------------------------------------------------


class ReferenceAddForm(forms.ModelForm):
    """Adds a reference through ``character_add_reference``, which checks the file by content.

    The admin turns only errors raised while validating into form errors, so the service (the
    validator and the writer) runs as the last validation step, inside the admin's transaction.
    """

    upload = forms.FileField(label="Image", help_text="PNG, JPEG or WebP; checked by content, not by name")
    make_primary = forms.BooleanField(
        required=False, help_text="the character's first reference becomes primary anyway"
    )

    class Meta:
        model = ReferenceImage
        fields = ["character", "version", "note"]

    def _post_clean(self) -> None:
        super()._post_clean()  # type: ignore[misc]  # ModelForm's hook (not in the stubs) builds the instance; the service does here
        if self.errors:
            return
        upload = self.cleaned_data["upload"]
        try:
            self.instance = character_add_reference(
                character=self.cleaned_data["character"],
                upload=upload,
                original_name=upload.name or "",
                primary=True if self.cleaned_data.get("make_primary") else None,
                note=self.cleaned_data.get("note", ""),
                version=self.cleaned_data.get("version"),
            )
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                target = "upload" if field == "image" else field
                self.add_error(target if target in self.fields else None, errors)


class ReferenceEmbeddingInline(ReadOnlyInline):
    model = ReferenceEmbedding
    readonly_fields = fields = ("model_id", "dim", "face_box", "created_at")


@admin.register(ReferenceImage)
class ReferenceImageAdmin(AdminThumbnailMixin, ProjectScopedAdmin):
    project_lookup = "character__project"
    list_display = [
        "thumb",
        "character",
        "version",
        "project",
        "is_primary",
        "dimensions",
        "original_name",
        "created_at",
    ]
    list_display_links = ["thumb", "character"]
    list_select_related = ["character", "character__project", "version"]
    list_filter = ["is_primary", ("character__project", RelatedOnlyFieldListFilter), "version__age_state"]
    search_fields = ["character__name", "original_name", "note", "=sha256"]
    autocomplete_fields = ["character", "version"]
    date_hierarchy = "created_at"
    actions = ["make_primary"]
    readonly_fields = [
        "preview",
        "character",
        "version",
        "is_primary",
        "width",
        "height",
        "sha256",
        "original_name",
        "created_at",
    ]
    fields = [
        "preview",
        "character",
        "version",
        "is_primary",
        "note",
        "original_name",
        ("width", "height"),
        "sha256",
        "created_at",
    ]

    def get_form(
        self, request: HttpRequest, obj: ReferenceImage | None = None, change: bool = False, **kwargs: Any
    ) -> type[forms.ModelForm[ReferenceImage]]:
        if obj is None:
            kwargs["form"] = ReferenceAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: ReferenceImage | None = None) -> list[Any]:
        if obj is None:
            return ["character", "version", "upload", "make_primary", "note"]
        return [*super().get_fields(request, obj)]

    def get_readonly_fields(self, request: HttpRequest, obj: ReferenceImage | None = None) -> list[str]:
        return list(super().get_readonly_fields(request, obj)) if obj else []

    def get_inlines(self, request: HttpRequest, obj: ReferenceImage | None) -> list[type]:
        return [ReferenceEmbeddingInline] if obj else []

    def save_model(self, request: HttpRequest, obj: ReferenceImage, form: forms.ModelForm, change: bool) -> None:
        if change:
            reference_update(reference=obj, note=obj.note)
        # On add, ReferenceAddForm has already stored the reference through the service.

    def delete_model(self, request: HttpRequest, obj: ReferenceImage) -> None:
        reference_delete(reference=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ReferenceImage]) -> None:
        # One at a time, each read fresh: deleting a primary promotes another, maybe one of these.
        with transaction.atomic():
            for pk in list(queryset.values_list("pk", flat=True)):
                reference = ReferenceImage.objects.filter(pk=pk).first()
                if reference is not None:
                    reference_delete(reference=reference)

    @admin.display(description="image")
    def thumb(self, obj: ReferenceImage) -> str:
        return _reference_thumb(obj)

    @admin.display(description="image")
    def preview(self, obj: ReferenceImage) -> str:
        return _reference_thumb(obj, PREVIEW_PX)

    @admin.display(description="project", ordering="character__project__name")
    def project(self, obj: ReferenceImage) -> str:
        return obj.character.project.name

    @admin.display(description="size")
    def dimensions(self, obj: ReferenceImage) -> str:
        return f"{obj.width}×{obj.height}"

    @admin.action(description="Make the selected reference the primary one", permissions=["change"])
    def make_primary(self, request: HttpRequest, queryset: QuerySet[ReferenceImage]) -> None:
        # One primary per character's own references, and one per version's.
        per_scope = Counter(queryset.values_list("character_id", "version_id"))
        crowded_ids = [character for (character, _version), n in per_scope.items() if n > 1]
        if crowded_ids:
            crowded = sorted(Character.objects.filter(pk__in=crowded_ids).values_list("name", flat=True))
            self.message_user(
                request,
                "A character has one primary reference: select one per character "
                f"(more than one selected for {', '.join(crowded)}). Nothing was changed.",
                messages.ERROR,
            )
            return
        ids, skipped = self.writable_ids(request, queryset)
        changed = 0
        for reference in ReferenceImage.objects.filter(pk__in=ids, is_primary=False):
            reference_set_primary(reference=reference)
            changed += 1
        self.message_user(request, f"{changed} reference(s) made primary.", messages.SUCCESS)
        self.report_skipped(request, skipped)


@admin.register(ReferenceEmbedding)
class ReferenceEmbeddingAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_lookup = "reference__character__project"
    list_display = ["__str__", "model_id", "dim", "has_face_box", "created_at"]
    list_select_related = ["reference", "reference__character"]
    list_filter = ["model_id"]
    search_fields = ["model_id", "reference__character__name"]
    raw_id_fields = ["reference"]
    readonly_fields = fields = ("reference", "model_id", "dim", "vector_head", "face_box_json", "created_at")

    @admin.display(description="face box", boolean=True)
    def has_face_box(self, obj: ReferenceEmbedding) -> bool:
        return obj.face_box is not None

    @admin.display(description="face box")
    def face_box_json(self, obj: ReferenceEmbedding) -> str:
        return pretty_json(obj.face_box)

    @admin.display(description="first values")
    def vector_head(self, obj: ReferenceEmbedding) -> str:
        data = bytes(obj.vector or b"")
        count = min(8, len(data) // 4)
        if not count:
            return "—"
        values = struct.unpack(f"<{count}f", data[: count * 4])
        return ", ".join(f"{v:.4f}" for v in values) + (" …" if obj.dim > count else "")


# --- Versions and variations -------------------------------------------------------------------


class VersionReferenceInline(ScopedInline, admin.TabularInline):
    """The version's own references; added on the reference page (choose the version there)."""

    model = ReferenceImage
    fk_name = "version"
    verbose_name = "version reference"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["thumb", "is_primary", "dimensions", "original_name", "note", "created_at"]
    readonly_fields = ["thumb", "is_primary", "dimensions", "original_name", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="image")
    def thumb(self, obj: ReferenceImage) -> str:
        return _reference_thumb(obj)

    @admin.display(description="size")
    def dimensions(self, obj: ReferenceImage) -> str:
        return f"{obj.width}×{obj.height}"


@admin.register(CharacterVersion)
class CharacterVersionAdmin(ProjectScopedAdmin):
    project_lookup = "character__project"
    inlines = [VersionReferenceInline]
    list_display = ["name", "character", "age_state", "emotional_state", "order", "slug", "created_at"]
    list_select_related = ["character"]
    list_filter = ["age_state", "emotional_state", ("character__project", RelatedOnlyFieldListFilter)]
    search_fields = ["name", "slug", "character__name"]
    autocomplete_fields = ["character"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]

    def delete_model(self, request: HttpRequest, obj: CharacterVersion) -> None:
        version_delete(version=obj)  # removes its references' files too

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CharacterVersion]) -> None:
        with transaction.atomic():
            for version in queryset:
                version_delete(version=version)


@admin.register(Variation)
class VariationAdmin(ProjectScopedAdmin):
    project_lookup = "character__project"
    list_display = ["name", "kind", "replaces", "character", "slug", "created_at"]
    list_select_related = ["character"]
    list_filter = ["kind", "replaces", ("character__project", RelatedOnlyFieldListFilter)]
    search_fields = ["name", "slug", "character__name"]
    autocomplete_fields = ["character"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]
