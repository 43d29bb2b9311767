"""REST API v1 for quality: evaluate media on demand, a job's scores and gates, phase gates.

- ``POST /quality/evaluate``: bounded before anything is decoded (a still image up to
  ``TOWER_UPLOAD_MAX_PIXELS``, a clip of at most ``EVALUATE_MAX_TOTAL_PIXELS`` decoded pixels in
  all; more is a 413 with the reason), then scored by a worker: the answer comes when the worker
  finishes within ``TOWER_EVALUATE_WAIT`` seconds, else a 202 whose ``url``
  (``GET /quality/evaluations/{id}``, the requester only) gives it later. Needs write access to the
  project (it may store scores), like submitting a job.
- ``POST /quality/phase-gate/{phase}``: evaluate a phase gate now (write access).
- ``GET /jobs/{id}/quality``: read access. Projects you cannot see answer 404.
- ``GET /phases``: the three phases with their specifications (kinds, default template, frames,
  fps, size, the gate's metrics and thresholds); with ``?project=ID`` (and ``&character=ID``) the
  thresholds are that project's (character's) and each phase gate's state is included. Read
  access; a project or character you cannot see answers 404.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from characters.selectors import characters_visible_to
from generation.selectors import assets_visible_to, job_get_for_user
from projects.selectors import project_get_for_user
from quality import tasks
from quality.models import Evaluation, EvaluationStatus, PhaseGate, QualityGate, QualityScore
from quality.services.common import QualityError
from quality.services.evaluations import QUEUE_UNREACHABLE, evaluation_request, evaluation_wait
from quality.services.phase_gates import phases_spec
from quality.services.phases import phase_gate_evaluate
from tower.core.api import parse_id
from tower.core.parsers import JSONParser
from tower.core.uploads import UploadError, image_header
from tower.core.users import signed_in

# --- Serializers ----------------------------------------------------------------------------


class EvaluateRequestSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="an image or video (checked by content)")
    asset = serializers.IntegerField(required=False, help_text="a stored output, instead of a file")
    project = serializers.IntegerField(required=False, help_text="required with a file")
    character = serializers.IntegerField(required=False, allow_null=True, help_text="compare against its references")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("file" in attrs) == ("asset" in attrs):
            raise serializers.ValidationError("give either a file or an asset")
        if "file" in attrs and "project" not in attrs:
            raise serializers.ValidationError({"project": ["required when evaluating an uploaded file"]})
        return attrs


class MetricResultSerializer(serializers.Serializer):
    metric = serializers.CharField()
    status = serializers.CharField(help_text="ok, unavailable (weights missing), no_subject (no face found) or error")
    value = serializers.FloatField(allow_null=True)
    model_id = serializers.CharField(allow_blank=True)
    threshold = serializers.FloatField(allow_null=True)
    passed = serializers.BooleanField(allow_null=True)
    fix = serializers.CharField(allow_blank=True, help_text="the command that makes an unavailable metric available")
    details = serializers.JSONField()


class EvaluationSerializer(serializers.Serializer):
    asset = serializers.IntegerField(allow_null=True)
    character = serializers.IntegerField(allow_null=True)
    frames = serializers.IntegerField()
    results = MetricResultSerializer(many=True)


class EvaluationPendingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField(help_text="pending: a worker has not finished it yet")
    url = serializers.CharField(help_text="where the answer will be (GET)")


class ScoreSerializer(serializers.ModelSerializer):
    status = serializers.CharField(
        read_only=True, help_text="ok, unavailable (weights missing), no_subject (no face found) or error"
    )

    class Meta:
        model = QualityScore
        fields = [
            "id",
            "metric",
            "value",
            "threshold",
            "passed",
            "status",
            "model_id",
            "character",
            "details",
            "created_at",
        ]
        read_only_fields = fields


class GateSerializer(serializers.ModelSerializer):
    class Meta:
        model = QualityGate
        fields = ["id", "stage", "passed", "details", "created_at"]
        read_only_fields = fields


class AssetScoresSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    frames = serializers.IntegerField()
    scores = ScoreSerializer(many=True)


class JobQualitySerializer(serializers.Serializer):
    job = serializers.IntegerField()
    status = serializers.CharField()
    gates = GateSerializer(many=True)
    assets = AssetScoresSerializer(many=True)


class PhaseGateRequestSerializer(serializers.Serializer):
    project = serializers.IntegerField()
    character = serializers.IntegerField(required=False, allow_null=True)


class PhaseGateSerializer(serializers.ModelSerializer):
    class Meta:
        model = PhaseGate
        fields = [
            "id",
            "project",
            "character",
            "phase",
            "is_open",
            "pass_ratio",
            "sample_size",
            "evaluated_at",
            "overridden_by",
            "override_reason",
        ]
        read_only_fields = fields


class GateMetricSerializer(serializers.Serializer):
    metric = serializers.CharField()
    comparison = serializers.CharField(help_text="'>' (strictly above the threshold) or 'seamless'")
    threshold = serializers.FloatField(allow_null=True)
    definition = serializers.CharField(required=False)
    similarity_threshold = serializers.FloatField(required=False, help_text="phase 1: a panel's face matches at ≥ this")
    weights = serializers.DictField(
        child=serializers.FloatField(), required=False, help_text="phase 3: the composite's weights"
    )


class PhaseGateSpecSerializer(serializers.Serializer):
    metrics = GateMetricSerializer(many=True)


class PhaseGateStateSerializer(serializers.Serializer):
    is_open = serializers.BooleanField()
    pass_ratio = serializers.FloatField(allow_null=True, help_text="share of the latest window that passed")
    sample_size = serializers.IntegerField()
    overridden = serializers.BooleanField(help_text="opened or closed by hand by staff")
    reason = serializers.CharField(allow_null=True, help_text="why it is closed; empty when open")
    opened_by = serializers.CharField(allow_null=True, help_text="override, window or orchestration")


class SheetLayoutSerializer(serializers.Serializer):
    columns = serializers.IntegerField()
    rows = serializers.IntegerField()


class PhaseSerializer(serializers.Serializer):
    phase = serializers.IntegerField()
    key = serializers.CharField(help_text="its key in the project's phase_templates")
    name = serializers.CharField()
    job_kinds = serializers.ListField(child=serializers.CharField())
    default_template = serializers.CharField(help_text="template slug the phase uses when none is named")
    frames = serializers.IntegerField()
    fps = serializers.IntegerField(allow_null=True)
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    poses = serializers.ListField(child=serializers.CharField(), required=False, help_text="phase 1: the sheet's poses")
    layout = SheetLayoutSerializer(required=False, help_text="phase 1: the sheet's panel grid")
    gate = PhaseGateSpecSerializer()
    state = PhaseGateStateSerializer(required=False, help_text="with ?project=: the gate's state now")


class PhasesSerializer(serializers.Serializer):
    project = serializers.IntegerField(allow_null=True)
    character = serializers.IntegerField(allow_null=True)
    phases = PhaseSerializer(many=True)


# --- Views ----------------------------------------------------------------------------------

# Decoded pixels (all frames together) an evaluation in the web process may hold: about 120 MB as
# RGB. A still image up to UPLOAD_MAX_PIXELS, or a short small clip; longer clips are scored by
# the workers when they are a job's output.
EVALUATE_MAX_TOTAL_PIXELS = 40_000_000


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "the upload is too large to evaluate"
    default_code = "too_large"


def _refuse_oversized(content: bytes) -> None:
    """413 for an upload whose header says it decodes to too many pixels
    (a decompression bomb, or an animation of many large frames), before anything is decoded."""
    try:
        image_header(
            content,
            max_pixels=settings.UPLOAD_MAX_PIXELS,
            max_total_pixels=min(settings.UPLOAD_MAX_PIXELS, EVALUATE_MAX_TOTAL_PIXELS),
        )
    except UploadError as exc:
        raise PayloadTooLarge(str(exc)) from None


def _bad_request(exc: QualityError) -> serializers.ValidationError:
    return serializers.ValidationError({"detail": [str(exc)]})


def _answer(row: Evaluation) -> Response:
    """What ``evaluate`` answers for ``row``: the scores, the reason it failed (400), or pending."""
    if row.status == EvaluationStatus.DONE:
        return Response(EvaluationSerializer(row.result).data)
    if row.status == EvaluationStatus.FAILED:
        if row.error.startswith(QUEUE_UNREACHABLE):
            return Response({"detail": row.error}, status=503)
        raise _bad_request(QualityError(row.error))
    url = reverse("quality-evaluation", kwargs={"evaluation_pk": row.pk})
    return Response(EvaluationPendingSerializer({"id": row.pk, "status": "pending", "url": url}).data, status=202)


class QualityViewSet(viewsets.ViewSet):
    """Quality evaluation and phase gates."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @extend_schema(
        request={"multipart/form-data": EvaluateRequestSerializer},
        responses={
            200: EvaluationSerializer,
            202: EvaluationPendingSerializer,
            503: OpenApiResponse(
                inline_serializer("QueueUnreachable", {"detail": serializers.CharField()}),
                description="the task queue cannot be reached: nothing was queued; try again",
            ),
        },
    )
    @action(detail=False, methods=["post"])
    def evaluate(self, request: Request) -> Response:
        """Score an uploaded image or video, or a stored asset; 400 for media that cannot be scored.

        An upload whose header says it decodes to more than 40 million pixels (all frames together;
        a still image: TOWER_UPLOAD_MAX_PIXELS) is a 413 before it is decoded. A worker scores it:
        its answer comes here when ready within TOWER_EVALUATE_WAIT seconds (default 20), else a 202
        whose ``url`` gives the answer later.
        """
        data = EvaluateRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = signed_in(request.user)
        asset = None
        if "asset" in values:
            asset = assets_visible_to(user).filter(pk=values["asset"]).first()
            if asset is None:
                raise Http404("No such asset")
            project = project_get_for_user(user=user, pk=asset.project_id, write=True)
        else:
            project = project_get_for_user(user=user, pk=values["project"], write=True)
        character = None
        if values.get("character") is not None:
            character = characters_visible_to(user).filter(pk=values["character"], project=project).first()
            if character is None:
                raise Http404("No such character")
        content = None
        if asset is None:
            max_bytes = settings.UPLOAD_MAX_BYTES
            content = values["file"].read(max_bytes + 1)
            if len(content) > max_bytes:
                raise _bad_request(
                    QualityError(f"the file is {len(content):,} bytes; at most {max_bytes:,} are evaluated here")
                )
            _refuse_oversized(content)
        row = evaluation_request(
            user=user,
            project=project,
            character=character,
            asset=asset,
            data=content,
            enqueue=tasks.enqueue_evaluation,
        )
        return _answer(evaluation_wait(evaluation_id=row.pk, seconds=settings.EVALUATE_WAIT_SECONDS))

    @extend_schema(
        responses={200: EvaluationSerializer, 202: EvaluationPendingSerializer},
        parameters=[OpenApiParameter("evaluation_pk", int, OpenApiParameter.PATH, description="the evaluation's id")],
    )
    @action(detail=False, methods=["get"], url_path=r"evaluations/(?P<evaluation_pk>[0-9]+)")
    def evaluation(self, request: Request, evaluation_pk: str) -> Response:
        """The answer of an evaluation you asked for: as ``evaluate`` would have answered, or pending (202)."""
        row = Evaluation.objects.filter(pk=parse_id(evaluation_pk), user=signed_in(request.user)).first()
        if row is None:
            raise Http404("No such evaluation")
        return _answer(row)

    @extend_schema(
        request=PhaseGateRequestSerializer,
        responses={200: PhaseGateSerializer},
        parameters=[OpenApiParameter("phase", int, OpenApiParameter.PATH, enum=[1, 2, 3])],
    )
    @action(detail=False, methods=["post"], url_path=r"phase-gate/(?P<phase>[0-9]+)")
    def phase_gate(self, request: Request, phase: str) -> Response:
        """Evaluate the gate that lets the project (or one character) leave ``phase`` now."""
        data = PhaseGateRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_get_for_user(user=request.user, pk=data.validated_data["project"], write=True)
        character = None
        if data.validated_data.get("character") is not None:
            character = (
                characters_visible_to(request.user).filter(pk=data.validated_data["character"], project=project).first()
            )
            if character is None:
                raise Http404("No such character")
        try:
            gate = phase_gate_evaluate(project=project, phase=int(phase), character=character)
        except QualityError as exc:
            raise _bad_request(exc) from None
        return Response(PhaseGateSerializer(gate).data)


class JobQualityView(APIView):
    """The scores of a job's outputs and the job's gates: one object (a view, not a viewset's
    ``list``, which the schema would document as an array)."""

    @extend_schema(
        operation_id="jobs_quality_retrieve",
        responses={200: JobQualitySerializer},
        parameters=[OpenApiParameter("job_pk", int, OpenApiParameter.PATH, description="the job's id")],
    )
    def get(self, request: Request, job_pk: str) -> Response:
        job = job_get_for_user(user=request.user, pk=parse_id(job_pk))
        assets = list(job.assets.order_by("pk").prefetch_related("scores"))
        body = {
            "job": job.pk,
            "status": job.status,
            "gates": list(job.gates.order_by("created_at", "pk")),
            "assets": [
                {"id": a.pk, "kind": a.kind, "frames": a.frames, "scores": sorted(a.scores.all(), key=lambda s: s.pk)}
                for a in assets
            ],
        }
        return Response(JobQualitySerializer(body).data)


class PhasesView(APIView):
    """The production phases as a contract: their specifications and, per project, their gates."""

    @extend_schema(
        operation_id="phases_retrieve",
        responses={200: PhasesSerializer},
        parameters=[
            OpenApiParameter("project", int, description="a project: its thresholds and its gates' state"),
            OpenApiParameter("character", int, description="a character of that project: its gates instead"),
        ],
    )
    def get(self, request: Request) -> Response:
        """The three phases (sheet → loop → video) with their specifications and gate thresholds;
        with ``project`` (and ``character``), each phase gate's state: open, pass ratio, sample
        size, overridden, and why it is closed."""
        project = character = None
        if request.query_params.get("project"):
            project = project_get_for_user(user=request.user, pk=parse_id(request.query_params["project"]))
        if request.query_params.get("character"):
            candidates = characters_visible_to(request.user).filter(pk=parse_id(request.query_params["character"]))
            if project is not None:
                candidates = candidates.filter(project=project)
            character = candidates.first()
            if character is None:
                raise Http404("No such character")
            project = project or character.project
        body = {
            "project": project.pk if project is not None else None,
            "character": character.pk if character is not None else None,
            "phases": phases_spec(project=project, character=character),
        }
        return Response(PhasesSerializer(body).data)
