"""REST API v1 for assets (read-only), workflow templates and input images; jobs are in api_jobs."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from generation import selectors
from generation.models import Asset, AssetKind, InputImage, JobKind, WorkflowTemplate
from generation.services.inputs import input_image_create
from generation.services.requests import MAX_ID
from generation.services.templates import (
    TemplateError,
    template_delete,
    template_follows_style,
    template_import,
    template_node_warnings,
)
from projects.selectors import project_get_for_user
from tower.core.api import TEXT_MAX_LENGTH, FilterSet, IntFilter, ModelSerializer
from tower.core.files import stored_name
from tower.core.thumbnails import thumb_name
from tower.core.users import signed_in

# --- Serializers ----------------------------------------------------------------------------


class AssetSerializer(ModelSerializer):
    duration = serializers.FloatField(
        source="duration_seconds", read_only=True, allow_null=True, help_text="seconds (a video or animation)"
    )
    chapters = serializers.SerializerMethodField(
        help_text='an assembled film\'s [{"title", "start", "end"}] in seconds'
    )

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
            "duration",
            "chapters",
            "sha256",
            "node_id",
            "comfy_filename",
            "metadata",
            "created_at",
        ]
        read_only_fields = fields

    def get_chapters(self, asset: Asset) -> list[dict[str, Any]]:
        chapters = (asset.metadata or {}).get("chapters")
        return chapters if isinstance(chapters, list) else []


class AssetSummarySerializer(AssetSerializer):
    """An asset in a list: without ``metadata`` (the job's generation parameters) and the ``chapters``
    kept in it (GET /assets/{id}/)."""

    class Meta(AssetSerializer.Meta):
        fields = [name for name in AssetSerializer.Meta.fields if name not in ("metadata", "chapters")]
        read_only_fields = fields


class InputImageSerializer(ModelSerializer):
    project = serializers.IntegerField(source="project_id", read_only=True)
    url = serializers.SerializerMethodField(help_text="the stored image")
    thumbnail_url = serializers.SerializerMethodField(help_text="a JPEG at most 320 pixels on its longer side")

    class Meta:
        model = InputImage
        fields = ["id", "project", "sha256", "width", "height", "original_name", "url", "thumbnail_url", "created_at"]
        read_only_fields = fields

    def _absolute(self, url: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url

    def get_url(self, obj: InputImage) -> str:
        return self._absolute(obj.file.url)

    def get_thumbnail_url(self, obj: InputImage) -> str:
        # Made when the image was uploaded (input_image_create); the image itself if it is missing.
        name = thumb_name(stored_name(obj.file))
        return self._absolute(obj.file.storage.url(name) if obj.file.storage.exists(name) else obj.file.url)


class InputImageUploadSerializer(serializers.Serializer):
    project = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    file = serializers.FileField(help_text="PNG, JPEG or WebP; checked by content, not by name")


class TemplateSerializer(ModelSerializer):
    follows_style = serializers.SerializerMethodField(
        help_text="parameters that take the project style's values (their bindings say style: true); "
        "every other bound input keeps the graph's own value unless a request overrides it"
    )

    class Meta:
        model = WorkflowTemplate
        fields = [
            "id",
            "project",
            "name",
            "slug",
            "kind",
            "description",
            "source",
            "weightless",
            "required_nodes",
            "bindings",
            "follows_style",
            "graph",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_follows_style(self, obj: WorkflowTemplate) -> list[str]:
        return template_follows_style(template=obj)


class TemplateSummarySerializer(TemplateSerializer):
    """A template in a list: without its graph (GET /templates/{id}/ has it)."""

    class Meta(TemplateSerializer.Meta):
        fields = [name for name in TemplateSerializer.Meta.fields if name != "graph"]
        read_only_fields = fields


class TemplateImportedSerializer(TemplateSerializer):
    warnings = serializers.SerializerMethodField(
        help_text="node classes no enabled backend has (by its last /object_info); the import is kept",
    )

    class Meta(TemplateSerializer.Meta):
        fields = [*TemplateSerializer.Meta.fields, "warnings"]
        read_only_fields = fields

    def get_warnings(self, obj: WorkflowTemplate) -> list[str]:
        return template_node_warnings(template=obj)


@extend_schema_field({"oneOf": [{"type": "object", "additionalProperties": True}, {"type": "string"}]})
class GraphField(serializers.JSONField):
    """A graph: an object, or the JSON text of one (never null: the schema said any JSON before)."""


class TemplateImportSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=JobKind.choices)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=TEXT_MAX_LENGTH)
    graph = GraphField(help_text="the API-format export (Workflow → Export (API)), as an object or its JSON text")
    bindings = serializers.JSONField(required=False, allow_null=True, default=None, help_text="inferred when absent")
    follows_style = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        default=list,
        max_length=20,
        help_text="bound parameters to take from the project style (e.g. width, height); "
        "the others keep the graph's own values",
    )


# --- Filters --------------------------------------------------------------------------------


class AssetFilter(FilterSet):
    project = IntFilter(field_name="project_id")
    job = IntFilter(field_name="job_id")
    kind = filters.ChoiceFilter(choices=AssetKind.choices)

    class Meta:
        model = Asset
        fields = ["project", "job", "kind"]


# --- Views ----------------------------------------------------------------------------------


class AssetViewSet(viewsets.ReadOnlyModelViewSet):
    """Stored outputs of the projects you can see, newest first."""

    serializer_class = AssetSerializer
    filterset_class = AssetFilter
    ordering_fields = ["created_at", "size_bytes"]

    def get_queryset(self) -> QuerySet[Asset]:
        assets = selectors.assets_visible_to(self.request.user)
        if self.action == "list":
            # A summary shows the project and job as ids: no join, and the metadata stays behind.
            assets = assets.select_related(None).defer("metadata")
        return assets

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return AssetSummarySerializer if self.action == "list" else AssetSerializer


class TemplateViewSet(viewsets.ReadOnlyModelViewSet):
    """Workflow templates: the shipped ones and those imported into your projects. POST imports
    a ComfyUI API-format export (bindings inferred unless given); DELETE removes an imported one."""

    serializer_class = TemplateSerializer
    filterset_fields = ["kind", "project"]
    search_fields = ["name", "slug"]

    def get_queryset(self) -> QuerySet[WorkflowTemplate]:
        templates = selectors.templates_visible_to(self.request.user)
        if self.action == "list":
            templates = templates.select_related(None).defer("graph")
        return templates

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return TemplateSummarySerializer if self.action == "list" else TemplateSerializer

    @extend_schema(request=TemplateImportSerializer, responses={201: TemplateImportedSerializer})
    def create(self, request: Request) -> Response:
        data = TemplateImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_get_for_user(user=request.user, pk=data.validated_data["project"], write=True)
        try:
            template = template_import(
                project=project,
                name=data.validated_data["name"],
                graph_json=data.validated_data["graph"],
                kind=data.validated_data["kind"],
                user=signed_in(request.user),
                bindings=data.validated_data["bindings"],
                description=data.validated_data["description"],
                follows_style=data.validated_data["follows_style"],
            )
        except TemplateError as exc:
            raise serializers.ValidationError({"graph": [str(exc)]}) from None
        return Response(TemplateImportedSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        if template.project_id is None:
            raise PermissionDenied("shipped templates cannot be deleted; they are reloaded on every start")
        project_get_for_user(user=request.user, pk=template.project_id, write=True)
        template_delete(template=template)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InputImageFilter(FilterSet):
    project = IntFilter(field_name="project_id")

    class Meta:
        model = InputImage
        fields = ["project"]


class InputImageViewSet(viewsets.ReadOnlyModelViewSet):
    """Images uploaded to feed templates' image inputs (``images: {"init_image": {"upload": ID}}`` in
    POST /jobs), of the projects you can see, newest first. POST uploads one."""

    serializer_class = InputImageSerializer
    filterset_class = InputImageFilter
    ordering_fields = ["created_at"]
    parser_classes = [MultiPartParser]

    def get_queryset(self) -> QuerySet[InputImage]:
        return selectors.input_images_visible_to(self.request.user)

    @extend_schema(
        request={"multipart/form-data": InputImageUploadSerializer},
        responses={
            201: InputImageSerializer,
            200: OpenApiResponse(InputImageSerializer, description="the same image was uploaded before: that one"),
        },
    )
    def create(self, request: Request) -> Response:
        data = InputImageUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_get_for_user(user=request.user, pk=data.validated_data["project"], write=True)
        upload = data.validated_data["file"]
        image, created = input_image_create(
            project=project, user=signed_in(request.user), upload=upload, original_name=upload.name or ""
        )
        return Response(
            self.get_serializer(image).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
