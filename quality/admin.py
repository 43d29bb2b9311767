from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.core.exceptions import PermissionDenied
from django.db.models import F, QuerySet
from django.http import HttpRequest

from generation.admin import asset_thumb
from generation.models import Asset, Job
from projects.admin_scope import ProjectScopedAdmin
from quality.models import Orchestration, PhaseGate, PhaseRun, QualityGate, QualityScore
from quality.services.orchestration import ACTIVE, OrchestrationError, orchestration_cancel
from quality.services.phases import phase_gate_override
from tower.core.admin import ReadOnlyAdminMixin, admin_link, pretty_json
from tower.core.users import signed_in


class ScoreMarginFilter(admin.SimpleListFilter):
    """Scores that failed, and the near misses worth a human look."""

    title = "against the threshold"
    parameter_name = "margin"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("failed", "Failed"), ("near", "Within 5% of the threshold"), ("unscored", "Not scored")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[QualityScore]) -> QuerySet[QualityScore]:
        if self.value() == "failed":
            return queryset.filter(passed=False)
        if self.value() == "near":
            return queryset.filter(
                value__isnull=False,
                threshold__isnull=False,
                value__gte=F("threshold") * 0.95,
                value__lte=F("threshold") * 1.05,
            )
        if self.value() == "unscored":
            return queryset.filter(value__isnull=True)
        return queryset


@admin.register(QualityScore)
class QualityScoreAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_lookup = "asset__project"
    list_display = [
        "thumb",
        "asset_link",
        "metric",
        "value",
        "threshold",
        "passed",
        "status",
        "character",
        "model_id",
        "created_at",
    ]
    list_select_related = ["asset", "character"]
    list_filter = [ScoreMarginFilter, "metric", "status", "passed"]
    search_fields = ["metric", "model_id", "=asset__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    raw_id_fields = ["asset"]
    readonly_fields = fields = (
        "preview",
        "asset",
        "metric",
        "value",
        "threshold",
        "passed",
        "status",
        "character",
        "model_id",
        "details_json",
        "created_at",
    )

    @admin.display(description="asset")
    def thumb(self, obj: QualityScore) -> str:
        return asset_thumb(obj.asset, size=64)

    @admin.display(description="preview")
    def preview(self, obj: QualityScore) -> str:
        return asset_thumb(obj.asset)

    @admin.display(description="asset", ordering="asset_id")
    def asset_link(self, obj: QualityScore) -> str:
        return admin_link(Asset, obj.asset_id)

    @admin.display(description="details")
    def details_json(self, obj: QualityScore) -> str:
        return pretty_json(obj.details)


@admin.register(QualityGate)
class QualityGateAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_lookup = "job__project"
    list_display = ["__str__", "job_link", "stage", "passed", "created_at"]
    list_filter = ["stage", "passed"]
    search_fields = ["=job__id"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    raw_id_fields = ["job"]
    readonly_fields = fields = ("job", "stage", "passed", "details_json", "created_at")

    @admin.display(description="job", ordering="job_id")
    def job_link(self, obj: QualityGate) -> str:
        return admin_link(Job, obj.job_id)

    @admin.display(description="details")
    def details_json(self, obj: QualityGate) -> str:
        return pretty_json(obj.details)


class PhaseGateForm(forms.ModelForm):
    class Meta:
        model = PhaseGate
        fields = ["is_open", "override_reason"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        overridden = "is_open" in self.changed_data or self.instance.overridden_by_id
        if overridden and not (cleaned.get("override_reason") or "").strip():
            self.add_error("override_reason", "say why the gate is opened or closed by hand")
        return cleaned


@admin.register(PhaseGate)
class PhaseGateAdmin(ProjectScopedAdmin):
    """Gates are evaluated by the pipeline; a person may override one, with a reason."""

    project_lookup = "project"
    form = PhaseGateForm
    list_display = [
        "__str__",
        "project",
        "character",
        "phase",
        "is_open",
        "pass_ratio",
        "sample_size",
        "evaluated_at",
        "overridden_by",
    ]
    list_select_related = ["project", "character", "overridden_by"]
    list_filter = ["phase", "is_open", ("project", RelatedOnlyFieldListFilter)]
    search_fields = ["project__name", "character__name"]
    fields = [
        "project",
        "character",
        "phase",
        "pass_ratio",
        "sample_size",
        "evaluated_at",
        "is_open",
        "override_reason",
        "overridden_by",
    ]
    readonly_fields = ["project", "character", "phase", "pass_ratio", "sample_size", "evaluated_at", "overridden_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PhaseGate, form: forms.ModelForm, change: bool) -> None:
        if not form.changed_data:
            return
        phase_gate_override(
            project=obj.project,
            phase=obj.phase,
            character=obj.character,
            is_open=form.cleaned_data["is_open"],
            reason=form.cleaned_data["override_reason"],
            user=signed_in(request.user),
        )


class PhaseRunInline(admin.TabularInline):
    """An orchestration's three phases: written by its engine, shown here."""

    model = PhaseRun
    extra = 0
    can_delete = False
    readonly_fields = fields = (
        "phase",
        "status",
        "attempts",
        "job_links",
        "input_asset_link",
        "best_asset_link",
        "verdict",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="jobs")
    def job_links(self, run: PhaseRun) -> str:
        from django.utils.html import format_html_join

        ids = sorted(run.jobs.values_list("pk", flat=True))
        return format_html_join(", ", "{}", ((admin_link(Job, pk),) for pk in ids)) or "—"

    @admin.display(description="input")
    def input_asset_link(self, run: PhaseRun) -> str:
        return admin_link(Asset, run.input_asset_id)

    @admin.display(description="best output")
    def best_asset_link(self, run: PhaseRun) -> str:
        return admin_link(Asset, run.best_asset_id)

    @admin.display(description="gate")
    def verdict(self, run: PhaseRun) -> str:
        return pretty_json(run.gate)


@admin.register(Orchestration)
class OrchestrationAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    """Sheet → loop → video runs: written by the orchestration engine; a person may cancel them."""

    project_lookup = "project"
    list_display = ["__str__", "project", "character", "status", "phase", "auto_advance", "created_by", "created_at"]
    list_select_related = ["project", "character", "created_by"]
    list_filter = ["status", "phase", "auto_advance", ("project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "project__name", "character__name", "prompt"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = fields = (
        "project",
        "character",
        "created_by",
        "prompt",
        "mode",
        "auto_advance",
        "templates",
        "status",
        "phase",
        "reasons_json",
        "created_at",
        "updated_at",
        "finished_at",
    )
    inlines = [PhaseRunInline]
    actions = ["cancel"]

    @admin.display(description="reasons")
    def reasons_json(self, obj: Orchestration) -> str:
        return pretty_json(obj.reasons)

    @admin.action(description="Cancel the selected orchestrations (and their running jobs)")
    def cancel(self, request: HttpRequest, queryset: QuerySet[Orchestration]) -> None:
        done = 0
        for orchestration in queryset.filter(status__in=ACTIVE):
            try:
                orchestration_cancel(orchestration=orchestration, user=signed_in(request.user))
            except (OrchestrationError, PermissionDenied) as exc:
                self.message_user(request, f"{orchestration}: {exc}", messages.WARNING)
            else:
                done += 1
        self.message_user(request, f"{done} orchestration(s) cancelled")

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Cancelling is a change: the mixin's read-only rule would hide it from everyone.
        actions = super().get_actions(request)
        if not request.user.has_perm("quality.change_orchestration"):
            actions.pop("cancel", None)
        return actions


from quality import movie_admin  # noqa: E402, F401  (registers movie production's admins; admin.py is autodiscovered)
