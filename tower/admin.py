"""The admin site's titles and the API token admin (the apps' admin helpers are in
``tower.core.admin`` and ``projects.admin_scope``)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from tower.models import ApiToken

admin.site.site_header = "Tower curation console"
admin.site.site_title = "Tower admin"
admin.site.index_title = "Curation console"


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
