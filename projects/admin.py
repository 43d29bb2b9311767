from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from projects.admin_scope import ProjectScopedAdmin, ScopedInline
from projects.memory import memory_effective
from projects.models import Episode, GenerationStyle, Membership, Project, Scene, SceneMemoryChange
from projects.services import (
    PROJECT_FIELDS,
    STYLE_FIELDS,
    THRESHOLD_RANGES,
    project_create,
    validate_loras,
    validate_phase_templates,
    validate_sheet_poses,
    validate_story_bible,
    validate_thresholds,
)
from tower.core.users import signed_in


class GenerationStyleForm(forms.ModelForm):
    class Meta:
        model = GenerationStyle
        fields = sorted(STYLE_FIELDS)

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        try:
            validate_loras(cleaned.get("loras", []))
        except ValidationError as exc:
            self.add_error(None, exc)
        for side in ("width", "height"):
            value = cleaned.get(side)
            if value and value % 8:
                self.add_error(side, "must be a multiple of 8")
        return cleaned


class GenerationStyleInline(ScopedInline, admin.StackedInline):
    model = GenerationStyle
    form = GenerationStyleForm
    can_delete = False
    min_num = 0
    max_num = 1
    extra = 0
    readonly_fields = ["updated_at"]
    fieldsets = [
        (None, {"fields": ["checkpoint", "vae", "loras", "clip_skip"]}),
        ("Sampling", {"fields": ["sampler", "scheduler", ("width", "height"), "fps"]}),
        ("Prompts", {"fields": ["style_prompt", "negative_prompt"]}),
        (
            "Presets",
            {
                "fields": [
                    ("draft_steps", "draft_cfg", "draft_denoise"),
                    ("production_steps", "production_cfg", "production_denoise"),
                    "updated_at",
                ]
            },
        ),
    ]


class MembershipInline(ScopedInline, admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]
    fields = ["user", "role", "created_at"]


class ProjectForm(forms.ModelForm):
    class Meta:
        model = Project
        fields = ["owner", *sorted(PROJECT_FIELDS)]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if "story_bible" in cleaned:
            try:
                validate_story_bible(cleaned["story_bible"])
            except ValidationError as exc:
                self.add_error(None, exc)
        # The same checks (and trimming) as the API and the pages: the admin saves without the service.
        for name, check in (("sheet_poses", validate_sheet_poses), ("phase_templates", validate_phase_templates)):
            if name in cleaned:
                try:
                    cleaned[name] = check(cleaned[name])
                except ValidationError as exc:
                    self.add_error(name, exc.message_dict[name])
        try:
            validate_thresholds({key: cleaned[key] for key in THRESHOLD_RANGES if cleaned.get(key) is not None})
        except ValidationError as exc:
            for key, messages in exc.message_dict.items():
                self.add_error(key, messages)
        return cleaned


@admin.register(Project)
class ProjectAdmin(ProjectScopedAdmin):
    project_lookup = "pk"
    form = ProjectForm
    list_display = ["name", "slug", "owner", "phase", "art_kind", "member_count", "created_at"]
    list_select_related = ["owner"]
    list_filter = ["phase", "art_kind"]
    search_fields = ["name", "slug", "owner__username"]
    prepopulated_fields = {"slug": ["name"]}
    autocomplete_fields = ["owner"]
    # The phase moves with the phase gates (quality); an override is made on the gate.
    readonly_fields = ["phase", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "slug", "owner", "description", "art_kind", "phase"]}),
        ("Story bible", {"fields": ["story_bible"]}),
        (
            "Quality gates",
            {
                "fields": [
                    ("threshold_similarity", "threshold_aesthetic"),
                    ("threshold_temporal", "threshold_motion"),
                    ("phase_pass_ratio", "phase_window", "max_regenerations"),
                ]
            },
        ),
        (
            "Production",
            {
                "fields": [
                    ("threshold_palette", "threshold_face_quality", "threshold_overall"),
                    "advance_unevaluated",
                    "sheet_poses",
                    "phase_templates",
                ]
            },
        ),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Project]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="members", ordering="member_count")
    def member_count(self, obj: Project) -> int:
        return obj.member_count  # type: ignore[attr-defined]  # annotated by get_queryset

    def get_inlines(self, request: HttpRequest, obj: Project | None) -> list[type]:
        # A new project gets its style from project_create; it can be edited once it exists.
        return [GenerationStyleInline, MembershipInline] if obj else [MembershipInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Project | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields.append("owner")  # a project changes hands only through a superuser
        return fields

    def save_model(self, request: HttpRequest, obj: Project, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        fields = {k: v for k, v in form.cleaned_data.items() if k in PROJECT_FIELDS}
        owner = form.cleaned_data.get("owner") or signed_in(request.user)
        created = project_create(owner=owner, **fields)
        # The admin goes on with ``obj`` (inlines, log entry, redirect): make it the created row.
        for field in Project._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db


class SceneInline(ScopedInline, admin.TabularInline):
    model = Scene
    extra = 0
    show_change_link = True
    fields = ["number", "title", "mood", "camera", "lighting", "duration_seconds"]


@admin.register(Episode)
class EpisodeAdmin(ProjectScopedAdmin):
    project_lookup = "project"
    inlines = [SceneInline]
    list_display = ["title", "number", "project", "scene_count", "created_at"]
    list_select_related = ["project"]
    list_filter = [("project", RelatedOnlyFieldListFilter)]
    search_fields = ["title", "synopsis", "project__name"]
    autocomplete_fields = ["project"]
    readonly_fields = ["created_at"]
    ordering = ["project__name", "number"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Episode]:
        return super().get_queryset(request).annotate(scene_count=Count("scenes"))

    @admin.display(description="scenes", ordering="scene_count")
    def scene_count(self, obj: Episode) -> int:
        return obj.scene_count  # type: ignore[attr-defined]  # annotated by get_queryset


def _pretty(data: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


class SceneMemoryChangeInline(ScopedInline, admin.TabularInline):
    """The memory's change log, read-only: edits go through projects.memory, which writes these rows."""

    model = SceneMemoryChange
    extra = 0
    can_delete = False
    fields = readonly_fields = ("created_at", "user", "changed")
    ordering = ("-created_at", "-id")
    verbose_name = "memory change"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="changes")
    def changed(self, obj: SceneMemoryChange) -> str:
        return _pretty(obj.changes)


@admin.register(Scene)
class SceneAdmin(ProjectScopedAdmin):
    project_lookup = "episode__project"
    list_display = ["__str__", "title", "mood", "duration_seconds", "character_names"]
    list_select_related = ["episode", "episode__project"]
    list_filter = [("episode__project", RelatedOnlyFieldListFilter)]
    search_fields = ["title", "description", "episode__title", "episode__project__name"]
    autocomplete_fields = ["episode"]
    # The memory is read here; it changes through projects.memory (scene page, API), which logs each change.
    readonly_fields = ["created_at", "character_names", "own_memory", "effective_memory"]
    exclude = ["memory"]
    inlines = [SceneMemoryChangeInline]
    ordering = ["episode__project__name", "episode__number", "number"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Scene]:
        return super().get_queryset(request).prefetch_related("characters")

    @admin.display(description="characters")
    def character_names(self, obj: Scene) -> str:
        return ", ".join(c.name for c in obj.characters.all()) or "—"

    @admin.display(description="memory set on this scene")
    def own_memory(self, obj: Scene) -> str:
        return _pretty(obj.memory or {})

    @admin.display(description="memory in force (carried from earlier scenes)")
    def effective_memory(self, obj: Scene) -> str:
        return _pretty(memory_effective(obj)) if obj.pk else "—"
