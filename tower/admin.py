"""Admin wiring shared by every app, and the API token admin.

The admin is the curation console. Two rules hold everywhere:

* a superuser sees every row; any other staff user sees only rows of projects they own or belong
  to (the same rule as the pages and the API, through ``projects.selectors``), and may change only
  rows of projects where they can write (owner or editor);
* writes that have a service go through the service; machine-maintained fields are read-only.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.db.models.fields.files import FieldFile
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from projects.models import Project
from projects.selectors import project_ids_visible_to, project_ids_writable_by, project_user_can_write
from tower.models import ApiToken

if TYPE_CHECKING:
    _InlineBase = admin.options.InlineModelAdmin
    _AdminBase = admin.ModelAdmin
else:
    _InlineBase = object
    _AdminBase = object

admin.site.site_header = "Tower curation console"
admin.site.site_title = "Tower admin"
admin.site.index_title = "Curation console"

THUMB_PX = 96
PREVIEW_PX = 384


# --- Display helpers ---------------------------------------------------------------------------


def thumbnail(file: FieldFile | None, *, alt: str = "", size: int = THUMB_PX) -> str:
    """An ``<img>`` of a stored image at most ``size`` pixels on its longer side, or a dash."""
    if not file or not file.name:
        return "—"
    try:
        url = file.url
    except ValueError:
        return "—"
    return thumbnail_url(url, alt=alt, size=size)


def thumbnail_url(url: str, *, alt: str = "", size: int = THUMB_PX) -> str:
    """An ``<img>`` of ``url`` (a thumbnail view or file) at most ``size`` pixels on its longer side."""
    return format_html(
        '<img loading="lazy" src="{}" alt="{}" class="tower-thumb" '
        'style="max-width:{}px;max-height:{}px;width:auto;height:auto;object-fit:contain">',
        url,
        alt,
        size,
        size,
    )


def pretty_json(value: Any) -> str:
    """JSON indented in a scrollable ``<pre>``; escaped like any other text."""
    if value in (None, {}, []):
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="max-height:24em;overflow:auto;margin:0">{}</pre>', text)


def admin_link(model: type[models.Model], pk: Any, label: Any | None = None) -> str:
    """A link to a row's change page built from its id alone (no query for the related row)."""
    if pk is None:
        return "—"
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else f"#{pk}")


# --- Project scoping ---------------------------------------------------------------------------


class ProjectScopedAdmin(admin.ModelAdmin):
    """A ``ModelAdmin`` whose rows belong to a project.

    ``project_lookup`` is the ORM path from the model to its project (``"pk"`` for Project).
    """

    project_lookup: str = "project"

    def scope_to_projects(self, queryset: QuerySet, project_ids: QuerySet) -> QuerySet:
        return queryset.filter(**{f"{self.project_lookup}__in": project_ids})

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return self.scope_to_projects(queryset, project_ids_visible_to(request.user))

    def writable(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        """The part of ``queryset`` the user may change."""
        if request.user.is_superuser:
            return queryset
        return self.scope_to_projects(queryset, project_ids_writable_by(request.user))

    def writable_ids(self, request: HttpRequest, queryset: QuerySet) -> tuple[list[Any], int]:
        """Ids an action may touch, and how many selected rows it must leave alone."""
        selected = list(queryset.values_list("pk", flat=True))
        if request.user.is_superuser:
            return selected, 0
        rows = queryset.model._default_manager.filter(pk__in=selected)
        allowed = list(self.writable(request, rows).values_list("pk", flat=True))
        return allowed, len(selected) - len(allowed)

    def report_skipped(self, request: HttpRequest, skipped: int) -> None:
        if skipped:
            self.message_user(
                request,
                f"{skipped} selected row(s) left unchanged: you have read-only access to their project.",
                messages.WARNING,
            )

    def project_of(self, obj: Any) -> Project | None:
        if self.project_lookup == "pk":
            return obj  # type: ignore[return-value]
        target: Any = obj
        for part in self.project_lookup.split("__"):
            target = getattr(target, part, None)
            if target is None:
                return None
        return target

    def user_may_write(self, request: HttpRequest, obj: Any) -> bool:
        if obj is None or request.user.is_superuser:
            return True
        project = self.project_of(obj)
        return project is not None and project_user_can_write(project=project, user=request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self.user_may_write(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self.user_may_write(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            choices = related_choices(self.admin_site, request, db_field.related_model)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            choices = related_choices(self.admin_site, request, db_field.related_model)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def related_choices(site: admin.AdminSite, request: HttpRequest, model: type[models.Model]) -> QuerySet | None:
    """For a non-superuser, the rows of ``model`` they may attach things to; else ``None``."""
    if request.user.is_superuser:
        return None
    related_admin = site._registry.get(model)
    if not isinstance(related_admin, ProjectScopedAdmin):
        return None
    return related_admin.writable(request, model._default_manager.all())


class ScopedInline(_InlineBase):
    """Mixin for inlines of a project-scoped parent: the parent decides who may write."""

    def _parent_admin(self) -> Any:
        return self.admin_site._registry.get(self.parent_model)

    def _parent_writable(self, request: HttpRequest, obj: Any) -> bool:
        parent = self._parent_admin()
        return not isinstance(parent, ProjectScopedAdmin) or parent.user_may_write(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_add_permission(request, obj) and self._parent_writable(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self._parent_writable(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and self._parent_writable(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            choices = related_choices(self.admin_site, request, db_field.related_model)
            if choices is not None:
                kwargs["queryset"] = choices
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ReadOnlyInline(admin.TabularInline):
    """An inline that only shows rows (logs, embeddings, outputs): no add, change or delete."""

    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdminMixin(_AdminBase):
    """Rows written only by machines (scores, gates, logs): viewable and deletable, never edited."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- API tokens --------------------------------------------------------------------------------


class TokenUseFilter(admin.SimpleListFilter):
    title = "last used"
    parameter_name = "used"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("30d", "In the last 30 days"), ("stale", "Not in 90 days"), ("never", "Never")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        if self.value() == "30d":
            return queryset.filter(last_used_at__gte=now - timedelta(days=30))
        if self.value() == "stale":
            return queryset.filter(last_used_at__lt=now - timedelta(days=90))
        if self.value() == "never":
            return queryset.filter(last_used_at__isnull=True)
        return queryset


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are created where the raw key can be shown once (the API); here: see, rename, revoke.

    The hash never appears: it is not a field of any form or column here.
    """

    form = ApiTokenForm
    list_display = ["name", "prefix_display", "user", "created_at", "last_used_at"]
    list_select_related = ["user"]
    list_filter = [TokenUseFilter, "created_at"]
    search_fields = ["name", "prefix", "user__username"]
    fields = ["name", "prefix_display", "user", "created_at", "last_used_at"]
    readonly_fields = ["prefix_display", "user", "created_at", "last_used_at"]
    date_hierarchy = "created_at"

    @admin.display(description="prefix", ordering="prefix")
    def prefix_display(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(user=request.user)
