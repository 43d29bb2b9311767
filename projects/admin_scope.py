"""Project scoping for every app's admin.

A superuser sees every row; any other staff user sees only rows of projects they own or belong to
(the same rule as the pages and the API, through ``projects.selectors``), and may change only rows of
projects where they can write (owner or editor). Writes that have a service go through the service;
machine-maintained fields are read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest

from projects.models import Project
from projects.selectors import project_ids_visible_to, project_ids_writable_by, project_user_can_write

if TYPE_CHECKING:
    _InlineBase = admin.options.InlineModelAdmin
else:
    _InlineBase = object


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
            return obj
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
        scope_choices(self.admin_site, request, db_field, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        scope_choices(self.admin_site, request, db_field, kwargs)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


def _model_admin(site: admin.AdminSite, model: type[models.Model]) -> admin.ModelAdmin[Any] | None:
    return site.get_model_admin(model) if site.is_registered(model) else None


def related_choices(site: admin.AdminSite, request: HttpRequest, model: type[models.Model]) -> QuerySet | None:
    """For a non-superuser, the rows of ``model`` they may attach things to; else ``None``."""
    if request.user.is_superuser:
        return None
    related_admin = _model_admin(site, model)
    if not isinstance(related_admin, ProjectScopedAdmin):
        return None
    return related_admin.writable(request, model._default_manager.all())


def scope_choices(site: admin.AdminSite, request: HttpRequest, db_field: Any, kwargs: dict[str, Any]) -> None:
    """Limit a relation field's choices to the rows the user may attach (unless the caller set them)."""
    if "queryset" not in kwargs:
        choices = related_choices(site, request, db_field.related_model)
        if choices is not None:
            kwargs["queryset"] = choices


class ScopedInline(_InlineBase):
    """Mixin for inlines of a project-scoped parent: the parent decides who may write."""

    def _parent_admin(self) -> Any:
        return _model_admin(self.admin_site, self.parent_model)

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
        scope_choices(self.admin_site, request, db_field, kwargs)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
