"""REST API v1 for jobs (submit, cancel, retry, reproduce, debug) and assets (read-only)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from generation import selectors
from generation.models import Asset, AssetKind, InputImage, Job, JobKind, JobStatus, WorkflowTemplate
from generation.services.inputs import IMAGE_PARAMETERS, input_image_create
from generation.services.requests import IMAGE_SOURCE_KINDS, MAX_ID, image_spec_problem, submit_request
from generation.services.submit import job_cancel, job_reproduce, job_retry
from generation.services.templates import (
    TemplateError,
    template_delete,
    template_follows_style,
    template_import,
    template_node_warnings,
)
from projects.selectors import project_get_for_user
from tower.core.api import TEXT_MAX_LENGTH, FilterSet, IntFilter, ModelSerializer
from tower.core.thumbnails import thumb_name

# --- Serializers ----------------------------------------------------------------------------


class JobSerializer(ModelSerializer):
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
            "batch",
            "label",
            "forced_reason",
            "params",
            "overrides",
            "graph",
            "timings",
            "error_details",
        ]
        read_only_fields = fields


class AssetSerializer(ModelSerializer):
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
        name = thumb_name(obj.file.name)
        return self._absolute(obj.file.storage.url(name) if obj.file.storage.exists(name) else obj.file.url)


class InputImageUploadSerializer(serializers.Serializer):
    project = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    file = serializers.FileField(help_text="PNG, JPEG or WebP; checked by content, not by name")


# --- Submitting and steering jobs --------------------------------------------------------------


IMAGE_CHOICE = 'give exactly one of reference, version, asset or upload with an id, e.g. {"reference": 3}'


class ImageChoiceSerializer(serializers.Serializer):
    """Where one image input's file comes from: exactly one of the four, by id."""

    reference = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="a reference image")
    version = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="a character version: its primary reference"
    )
    asset = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="an earlier output")
    upload = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_ID, help_text="an input image (POST /api/v1/input-images)"
    )

    def to_internal_value(self, data: Any) -> dict[str, int]:
        # Unknown keys would be dropped silently ({"assett": 3} read as nothing given).
        if not isinstance(data, dict) or set(data) - set(IMAGE_SOURCE_KINDS):
            raise serializers.ValidationError(IMAGE_CHOICE)
        value = super().to_internal_value(data)
        if len(value) != 1:
            raise serializers.ValidationError(IMAGE_CHOICE)
        return value


class ImagesSerializer(serializers.Serializer):
    """The template's image inputs (only those it binds; see GET /templates/{id}/)."""

    init_image = ImageChoiceSerializer(required=False, help_text="the image to start from (img2img, first frame)")
    reference_image = ImageChoiceSerializer(required=False, help_text="the IPAdapter reference")

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            for param in data:
                if param not in IMAGE_PARAMETERS:
                    raise serializers.ValidationError(image_spec_problem(param, data[param]))
        return super().to_internal_value(data)


class JobCreateSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    template = serializers.CharField(max_length=200, help_text="template id or slug")
    mode = serializers.ChoiceField(choices=["draft", "production"], default="draft")
    character = serializers.IntegerField(required=False, allow_null=True)
    version = serializers.IntegerField(required=False, allow_null=True)
    variation = serializers.IntegerField(required=False, allow_null=True)
    scene = serializers.IntegerField(required=False, allow_null=True)
    prompt = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    negative = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    overrides = serializers.DictField(required=False, default=dict, help_text="style fields and parameters")
    seeds = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=2**63 - 1), required=False, max_length=64
    )
    count = serializers.IntegerField(
        required=False, min_value=1, max_value=64, help_text="jobs with drawn seeds (default 1); not with seeds"
    )
    grid = serializers.DictField(
        child=serializers.ListField(min_length=1, max_length=16),
        required=False,
        help_text='parameter → values, e.g. {"cfg": [6, 8], "steps": [20, 30]}',
    )
    init_asset = serializers.IntegerField(
        required=False, allow_null=True, help_text="an output to start from (short for images.init_image.asset)"
    )
    init_reference = serializers.IntegerField(
        required=False, allow_null=True, help_text="a reference image (short for images.init_image.reference)"
    )
    images = ImagesSerializer(
        required=False,
        help_text="the template's image inputs, each from a reference, a version (its primary reference), an "
        "output or an upload; a character's job fills those left out with its primary reference",
    )
    force_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=1000,
        help_text="run a character's phase-2 or phase-3 work although the phase before is not passed, "
        "and why (editors; recorded on the job)",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "count" in attrs and attrs.get("seeds") is not None:
            # Two answers to "how many jobs": refuse rather than silently prefer one.
            raise serializers.ValidationError(
                {"count": ["give seeds (one job each) or count (jobs with drawn seeds), not both"]}
            )
        return attrs


class JobRefusalSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    error_node = serializers.CharField(
        help_text="the node pre-flight complained about, e.g. '#4 CheckpointLoaderSimple'"
    )
    reason = serializers.CharField()


class JobBatchSerializer(serializers.Serializer):
    batch = serializers.UUIDField(allow_null=True)
    jobs = JobSerializer(many=True)
    failed = JobRefusalSerializer(many=True, help_text="jobs that failed pre-flight at once, and why")


class JobBatchRefusedSerializer(JobBatchSerializer):
    detail = serializers.CharField(help_text="why no job of the request can run")
    reasons = serializers.ListField(child=serializers.CharField(), help_text="the distinct reasons")


class ReproductionSerializer(serializers.Serializer):
    original = serializers.IntegerField()
    identical = serializers.BooleanField(allow_null=True, help_text="null until the reproduction finished")
    original_sha256 = serializers.ListField(child=serializers.CharField())
    reproduced_sha256 = serializers.ListField(child=serializers.CharField())


class JobLogLineSerializer(serializers.Serializer):
    at = serializers.DateTimeField(source="created_at")
    level = serializers.CharField()
    message = serializers.CharField()
    data = serializers.JSONField(allow_null=True)


class JobDebugSerializer(serializers.Serializer):
    job = JobSerializer()
    backend = serializers.DictField(allow_null=True)
    log = JobLogLineSerializer(many=True)
    reproduction = ReproductionSerializer(allow_null=True)


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


class TemplateImportedSerializer(TemplateSerializer):
    warnings = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="node classes no enabled backend has (by its last /object_info); the import is kept",
    )

    class Meta(TemplateSerializer.Meta):
        fields = [*TemplateSerializer.Meta.fields, "warnings"]
        read_only_fields = fields


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


class JobFilter(FilterSet):
    # Numbers, not model choices: an invisible project must look exactly like a missing one.
    project = IntFilter(field_name="project_id")
    character = IntFilter(field_name="character_id")
    status = filters.ChoiceFilter(choices=JobStatus.choices)
    kind = filters.ChoiceFilter(choices=JobKind.choices)

    class Meta:
        model = Job
        fields = ["project", "character", "status", "kind"]


class AssetFilter(FilterSet):
    project = IntFilter(field_name="project_id")
    job = IntFilter(field_name="job_id")
    kind = filters.ChoiceFilter(choices=AssetKind.choices)

    class Meta:
        model = Asset
        fields = ["project", "job", "kind"]


# --- Views ----------------------------------------------------------------------------------


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Generation jobs of the projects you can see, newest first; POST submits new ones."""

    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "finished_at"]
    throttle_scope = "generation"

    def get_queryset(self) -> QuerySet[Job]:
        return selectors.jobs_visible_to(self.request.user)

    def get_throttles(self):  # type: ignore[no-untyped-def]
        if self.action in {"create", "retry", "reproduce"}:
            return [ScopedRateThrottle()]
        return super().get_throttles()

    def _writable_job(self) -> Job:
        job = self.get_object()
        project_get_for_user(user=self.request.user, pk=job.project_id, write=True)
        return job

    @extend_schema(
        request=JobCreateSerializer,
        responses={
            201: JobBatchSerializer,
            422: OpenApiResponse(
                JobBatchRefusedSerializer,
                description="every job failed pre-flight (no enabled backend could run it); "
                "the failed jobs are recorded and listed with their reasons",
            ),
        },
    )
    def create(self, request: Request) -> Response:
        data = JobCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        jobs = submit_request(user=request.user, data=data.validated_data)
        failed = [
            {"job": j.pk, "error_node": j.error_node, "reason": j.error_message}
            for j in jobs
            if j.status == JobStatus.FAILED
        ]
        body: dict[str, Any] = {
            "batch": jobs[0].batch if jobs else None,
            "jobs": JobSerializer(jobs, many=True).data,
            "failed": failed,
        }
        if jobs and len(failed) == len(jobs):
            # Nothing will run: answering 201 ("created") would read as success to a script.
            reasons = list(dict.fromkeys(f["reason"] for f in failed))
            body = {"detail": f"no job could run: {reasons[0]}", "reasons": reasons, **body}
            return Response(body, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = job_cancel(job=self._writable_job(), user=request.user)
        return Response(JobSerializer(selectors.jobs_visible_to(request.user).get(pk=job.pk)).data)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = job_retry(job=self._writable_job(), user=request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def reproduce(self, request: Request, pk: str | None = None) -> Response:
        job = job_reproduce(job=self._writable_job(), user=request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: JobDebugSerializer})
    @action(detail=True, methods=["get"])
    def debug(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        return Response(JobDebugSerializer(selectors.job_debug(job=job)).data)


class AssetViewSet(viewsets.ReadOnlyModelViewSet):
    """Stored outputs of the projects you can see, newest first."""

    serializer_class = AssetSerializer
    filterset_class = AssetFilter
    ordering_fields = ["created_at", "size_bytes"]

    def get_queryset(self) -> QuerySet[Asset]:
        return selectors.assets_visible_to(self.request.user)


class TemplateViewSet(viewsets.ReadOnlyModelViewSet):
    """Workflow templates: the shipped ones and those imported into your projects. POST imports
    a ComfyUI API-format export (bindings inferred unless given); DELETE removes an imported one."""

    serializer_class = TemplateSerializer
    filterset_fields = ["kind", "project"]
    search_fields = ["name", "slug"]

    def get_queryset(self) -> QuerySet[WorkflowTemplate]:
        return selectors.templates_visible_to(self.request.user)

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
                user=request.user,
                bindings=data.validated_data["bindings"],
                description=data.validated_data["description"],
                follows_style=data.validated_data["follows_style"],
            )
        except TemplateError as exc:
            raise serializers.ValidationError({"graph": [str(exc)]}) from None
        template.warnings = template_node_warnings(template=template)
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
            project=project, user=request.user, upload=upload, original_name=upload.name or ""
        )
        return Response(
            self.get_serializer(image).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )
