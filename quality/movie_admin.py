"""The admin's view of movie production: scene runs with their segments, join verdicts and feedback.

All of it is written by the scene chain; people read it here, delete it, and rate feedback on the
pages and API (the rating goes through the feedback service there).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import RelatedOnlyFieldListFilter
from django.http import HttpRequest

from generation.models import Asset, Job
from projects.admin_scope import ProjectScopedAdmin
from quality.models import JoinEvaluation, QualityFeedback, SceneRun, Segment
from tower.core.admin import ReadOnlyAdminMixin, admin_link, pretty_json


class SegmentInline(admin.TabularInline):
    """A run's segments in order: written by the chain, shown here."""

    model = Segment
    extra = 0
    can_delete = False
    readonly_fields = fields = (
        "number",
        "status",
        "attempts",
        "job_link",
        "output_link",
        "frame_consistency",
        "motion_smoothness",
        "overall",
        "join_ssim",
        "join_flow",
        "join_passed",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="job")
    def job_link(self, segment: Segment) -> str:
        return admin_link(Job, segment.job_id)

    @admin.display(description="output")
    def output_link(self, segment: Segment) -> str:
        return admin_link(Asset, segment.output_id)


@admin.register(SceneRun)
class SceneRunAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    project_lookup = "scene__episode__project"
    list_display = ["__str__", "scene", "template", "segments_planned", "status", "created_by", "created_at"]
    list_select_related = ["scene__episode__project", "template", "created_by"]
    list_filter = ["status", ("scene__episode__project", RelatedOnlyFieldListFilter)]
    search_fields = ["=id", "scene__title", "scene__episode__title"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = fields = (
        "scene",
        "template",
        "created_by",
        "segments_planned",
        "status",
        "reasons_json",
        "created_at",
        "finished_at",
    )
    inlines = [SegmentInline]

    @admin.display(description="reasons")
    def reasons_json(self, obj: SceneRun) -> str:
        return pretty_json(obj.reasons)


@admin.register(JoinEvaluation)
class JoinEvaluationAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    list_display = ["__str__", "kind", "scene", "attempt", "ssim", "flow_discontinuity", "passed", "created_at"]
    list_select_related = ["scene__episode__project"]
    list_filter = ["kind", "passed", ("project", RelatedOnlyFieldListFilter)]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = fields = (
        "project",
        "scene",
        "kind",
        "segment",
        "before",
        "after",
        "attempt",
        "ssim",
        "flow_discontinuity",
        "passed",
        "details_json",
        "created_at",
    )

    @admin.display(description="details")
    def details_json(self, obj: JoinEvaluation) -> str:
        return pretty_json(obj.details)


@admin.register(QualityFeedback)
class QualityFeedbackAdmin(ReadOnlyAdminMixin, ProjectScopedAdmin):
    list_display = ["__str__", "project", "template", "segment", "attempt", "passed", "rating", "created_at"]
    list_select_related = ["project", "template", "segment"]
    list_filter = ["passed", "rating", ("project", RelatedOnlyFieldListFilter)]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = fields = (
        "project",
        "template",
        "segment",
        "job",
        "attempt",
        "passed",
        "rating",
        "rated_by",
        "prompt",
        "scores_json",
        "params_json",
        "successful_elements",
        "failed_elements",
        "created_at",
    )

    @admin.display(description="scores")
    def scores_json(self, obj: QualityFeedback) -> str:
        return pretty_json(obj.scores)

    @admin.display(description="parameters")
    def params_json(self, obj: QualityFeedback) -> str:
        return pretty_json(obj.params)
