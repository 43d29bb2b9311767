"""The admin's view of film assemblies: queued and run by workers, read (and deleted) here."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter

from generation.models import Assembly
from projects.admin_scope import ProjectScopedAdmin
from tower.core.admin import ReadOnlyAdminMixin, pretty_json


@admin.register(Assembly)
class AssemblyAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    list_display = ["__str__", "episode", "status", "progress", "container", "stream_copy", "created_by", "created_at"]
    list_select_related = ["episode__project", "scene", "created_by"]
    list_filter = ["status", "container", ("project", RelatedOnlyFieldListFilter)]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = fields = (
        "project",
        "episode",
        "scene",
        "created_by",
        "status",
        "progress",
        "container",
        "crossfade_frames",
        "stream_copy",
        "asset",
        "chapters_json",
        "error_message",
        "created_at",
        "started_at",
        "finished_at",
    )

    @admin.display(description="chapters")
    def chapters_json(self, obj: Assembly) -> str:
        return pretty_json(obj.chapters)
