"""REST API v1 for jobs: list (summaries), detail, submit, cancel, retry, reproduce, debug."""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

from generation import selectors
from generation.models import Backend, Job, JobKind, JobStatus
from generation.services.inputs import IMAGE_PARAMETERS
from generation.services.requests import IMAGE_SOURCE_KINDS, MAX_ID, image_spec_problem, submit_request
from generation.services.submit import job_cancel, job_reproduce, job_retry
from projects.selectors import project_get_for_user
from tower.core.api import FilterSet, IntFilter, ModelSerializer, RowListSerializer, row_columns
from tower.core.users import signed_in

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


# The graph and the parameters are most of a job's bytes (kilobytes each): a list answers without
# them, the detail and ``debug`` carry them.
JOB_HEAVY_FIELDS = ("params", "overrides", "graph", "timings", "error_details")
JOB_SUMMARY_FIELDS = [name for name in JobSerializer.Meta.fields if name not in JOB_HEAVY_FIELDS]


class JobSummarySerializer(JobSerializer):
    """A job in a list: everything but its parameters, graph, timings and error details
    (GET /jobs/{id}/ has them)."""

    # A column of the list's rows (annotated in JobViewSet.get_queryset), not a join: the page's
    # count then reads the job table alone.
    backend_name = serializers.CharField(read_only=True, allow_null=True)

    class Meta(JobSerializer.Meta):
        fields = JOB_SUMMARY_FIELDS
        read_only_fields = fields
        list_serializer_class = RowListSerializer

    def build_relational_field(self, field_name: str, relation_info: Any) -> tuple[type, dict[str, Any]]:
        # The id read from the row: a related field costs ten times more per value (a page has 500).
        model_field = relation_info.model_field
        kwargs = {"source": f"{field_name}_id", "read_only": True, "allow_null": model_field.null}
        if model_field.help_text:
            kwargs["help_text"] = model_field.help_text
        return serializers.IntegerField, kwargs


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
    # DRF's metaclass moves declared fields off the class, so Serializer.data stays the property.
    data = serializers.JSONField(allow_null=True)  # type: ignore[assignment]  # the field is named "data" in the API


class JobDebugSerializer(serializers.Serializer):
    job = JobSerializer()
    backend = serializers.DictField(allow_null=True)
    log = JobLogLineSerializer(many=True)
    reproduction = ReproductionSerializer(allow_null=True)


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


# --- Views ----------------------------------------------------------------------------------


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Generation jobs of the projects you can see, newest first; POST submits new ones."""

    serializer_class = JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "finished_at"]
    throttle_scope = "generation"

    def get_queryset(self) -> QuerySet[Job]:
        jobs = selectors.jobs_visible_to(self.request.user)
        if self.action == "list":
            # Rows of exactly the columns a summary shows (the heavy JSON stays in the database),
            # serialised without a model instance each.
            backend_name = Subquery(Backend.objects.filter(pk=OuterRef("backend_id")).order_by().values("name"))
            rows = jobs.annotate(backend_name=backend_name).values(*row_columns(JobSummarySerializer))
            return rows  # rows (dicts), see RowListSerializer
        return jobs

    def get_object(self) -> Job:
        # One job is read the way generation's pages and sockets read it (404 when not visible).
        job = selectors.job_get_for_user(user=self.request.user, pk=self.kwargs["pk"])
        self.check_object_permissions(self.request, job)
        return job

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return JobSummarySerializer if self.action == "list" else JobSerializer

    def get_throttles(self) -> list[BaseThrottle]:
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
        jobs = submit_request(user=signed_in(request.user), data=data.validated_data)
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
        job = job_cancel(job=self._writable_job(), user=signed_in(request.user))
        return Response(JobSerializer(selectors.job_get_for_user(user=request.user, pk=job.pk)).data)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = job_retry(job=self._writable_job(), user=signed_in(request.user))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def reproduce(self, request: Request, pk: str | None = None) -> Response:
        job = job_reproduce(job=self._writable_job(), user=signed_in(request.user))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: JobDebugSerializer})
    @action(detail=True, methods=["get"])
    def debug(self, request: Request, pk: str | None = None) -> Response:
        job = self.get_object()
        return Response(JobDebugSerializer(selectors.job_debug(job=job)).data)
