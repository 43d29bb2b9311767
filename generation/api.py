"""REST API v1 for jobs and assets (read-only: jobs are created by the generation services)."""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from rest_framework import serializers, viewsets

from generation import selectors
from generation.models import Asset, AssetKind, Job, JobKind, JobStatus

# --- Serializers ----------------------------------------------------------------------------


class JobSerializer(serializers.ModelSerializer):
    backend_name = serializers.CharField(source="backend.name", read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "project",
            "character",
            "version",
            "variation",
            "scene",
            "template",
            "created_by",
            "kind",
            "phase",
            "mode",
            "status",
            "progress",
            "current_node",
            "eta_seconds",
            "queue_position",
            "prompt",
            "negative_prompt",
            "seed",
            "backend",
            "backend_name",
            "prompt_id",
            "attempts",
            "max_attempts",
            "error_node",
            "error_type",
            "error_message",
            "created_at",
            "submitted_at",
            "started_at",
            "finished_at",
            "parent",
            "reproduce_of",
            "params",
            "overrides",
            "graph",
            "timings",
            "error_details",
        ]
        read_only_fields = fields


class AssetSerializer(serializers.ModelSerializer):
    class Meta:
        model = Asset
        fields = [
            "id",
            "project",
            "job",
            "file",
            "thumbnail",
            "kind",
            "mime",
            "size_bytes",
            "width",
            "height",
            "frames",
            "fps",
            "duration_seconds",
            "sha256",
            "node_id",
            "comfy_filename",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields


# --- Filters --------------------------------------------------------------------------------


class JobFilter(filters.FilterSet):
    # Numbers, not model choices: an invisible project must look exactly like a missing one.
    project = filters.NumberFilter(field_name="project_id")
    character = filters.NumberFilter(field_name="character_id")
    status = filters.ChoiceFilter(choices=JobStatus.choices)
    kind = filters.ChoiceFilter(choices=JobKind.choices)

    class Meta:
        model = Job
        fields = ["project", "character", "status", "kind"]


class AssetFilter(filters.FilterSet):
    project = filters.NumberFilter(field_name="project_id")
    job = filters.NumberFilter(field_name="job_id")
    kind = filters.ChoiceFilter(choices=AssetKind.choices)

    class Meta:
        model = Asset
        fields = ["project", "job", "kind"]


# --- Views ----------------------------------------------------------------------------------


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Generation jobs of the projects you can see, newest first."""

    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "finished_at"]

    def get_queryset(self) -> QuerySet[Job]:
        return selectors.jobs_visible_to(self.request.user)


class AssetViewSet(viewsets.ReadOnlyModelViewSet):
    """Stored outputs of the projects you can see, newest first."""

    serializer_class = AssetSerializer
    filterset_class = AssetFilter
    ordering_fields = ["created_at", "size_bytes"]

    def get_queryset(self) -> QuerySet[Asset]:
        return selectors.assets_visible_to(self.request.user)
