"""REST API v1 for orchestrations (issue 18 item 5; ``quality.services.orchestration``).

- ``POST /orchestrations`` ``{"project", "character", "prompt", "auto_advance", "templates":
  {"sheet", "loop", "video"}}`` (templates optional: the project's) → 201 with the orchestration;
- ``GET /orchestrations`` (``?project=``, ``?character=``, ``?status=``) and ``GET /orchestrations/{id}``;
- ``POST /orchestrations/{id}/advance`` (approve the next phase of one waiting for it) and
  ``POST /orchestrations/{id}/cancel``.

Projects you cannot see answer 404 (their orchestrations, characters and ids look missing); a
viewer's write is a 403; a request that cannot start or move is a 400 saying why.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

from characters.selectors import characters_visible_to
from projects.models import Mode
from projects.selectors import project_get_for_user
from quality.models import Orchestration, OrchestrationStatus
from quality.orchestration_selectors import orchestration_get_for_user, orchestrations_visible_to, phase_run_summary
from quality.services.orchestration import (
    PHASE_KEYS,
    PROMPT_MAX_LENGTH,
    OrchestrationError,
    orchestration_advance,
    orchestration_cancel,
    orchestration_start,
)
from tower.core.api import FilterSet, IntFilter, parse_id
from tower.core.users import signed_in


class PhaseTemplatesSerializer(serializers.Serializer):
    sheet = serializers.CharField(required=False, max_length=80, help_text="a character_sheet template's slug")
    loop = serializers.CharField(required=False, max_length=80, help_text="a loop template's slug")
    video = serializers.CharField(required=False, max_length=80, help_text="a video template's slug")

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(PHASE_KEYS.values()))
            if unknown:
                raise serializers.ValidationError(
                    f"unknown template key(s) {', '.join(map(repr, unknown))}: give 'sheet', 'loop' and/or 'video'"
                )
        return super().to_internal_value(data)


class OrchestrationCreateSerializer(serializers.Serializer):
    project = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    character = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    prompt = serializers.CharField(required=False, allow_blank=True, default="", max_length=PROMPT_MAX_LENGTH)
    auto_advance = serializers.BooleanField(
        required=False, default=True, help_text="start each phase as soon as the one before passes its gate"
    )
    mode = serializers.ChoiceField(choices=Mode.choices, required=False, default=Mode.DRAFT)
    templates = PhaseTemplatesSerializer(required=False, help_text="each phase's template; default: the project's")


class PhaseRunSerializer(serializers.Serializer):
    phase = serializers.IntegerField()
    status = serializers.CharField(help_text="pending, running, awaiting_approval, passed, failed or cancelled")
    attempts = serializers.IntegerField(help_text="jobs run for this phase (at most 1 + max_regenerations)")
    jobs = serializers.ListField(child=serializers.IntegerField(), help_text="the attempts' job ids, oldest first")
    gate = serializers.JSONField(help_text="the phase gate's last verdict: passed, score, reasons, checks, …")
    best_asset = serializers.IntegerField(allow_null=True, help_text="the output handed to the next phase")
    input_asset = serializers.IntegerField(allow_null=True, help_text="what the phase before handed on")
    input_image = serializers.IntegerField(
        allow_null=True, help_text="the input image cut from it (the sheet's best pose, the loop's best frame)"
    )
    handoff = serializers.JSONField(help_text="which panel or frame was cut out of input_asset, and why")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class OrchestrationSerializer(serializers.ModelSerializer):
    phases = serializers.SerializerMethodField()

    class Meta:
        model = Orchestration
        fields = [
            "id",
            "project",
            "character",
            "created_by",
            "prompt",
            "mode",
            "auto_advance",
            "templates",
            "status",
            "phase",
            "reasons",
            "phases",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = fields

    @extend_schema_field(PhaseRunSerializer(many=True))
    def get_phases(self, orchestration: Orchestration) -> list[dict[str, Any]]:
        runs = sorted(orchestration.phase_runs.all(), key=lambda r: r.phase)
        return PhaseRunSerializer([phase_run_summary(run) for run in runs], many=True).data  # type: ignore[return-value]  # many=True: a list


class OrchestrationFilter(FilterSet):
    project = IntFilter(field_name="project_id")
    character = IntFilter(field_name="character_id")
    status = filters.ChoiceFilter(choices=OrchestrationStatus.choices)

    class Meta:
        model = Orchestration
        fields = ["project", "character", "status"]


class OrchestrationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Orchestrations (sheet → loop → video behind the phase gates) of the projects you can see."""

    serializer_class = OrchestrationSerializer
    filterset_class = OrchestrationFilter
    ordering_fields = ["created_at"]
    throttle_scope = "generation"

    def get_throttles(self) -> list[BaseThrottle]:
        if self.action in {"create", "advance"}:  # each queues GPU work
            return [ScopedRateThrottle()]
        return super().get_throttles()

    def get_queryset(self) -> QuerySet[Orchestration]:
        return orchestrations_visible_to(self.request.user)

    def get_object(self) -> Orchestration:
        write = self.request.method not in ("GET", "HEAD", "OPTIONS")
        return orchestration_get_for_user(user=self.request.user, pk=parse_id(self.kwargs["pk"]), write=write)

    def _answer(self, orchestration: Orchestration, code: int = status.HTTP_200_OK) -> Response:
        fresh = orchestration_get_for_user(user=self.request.user, pk=orchestration.pk)
        return Response(OrchestrationSerializer(fresh).data, status=code)

    @extend_schema(request=OrchestrationCreateSerializer, responses={201: OrchestrationSerializer})
    def create(self, request: Request) -> Response:
        """Start an orchestration: phase 1's first attempt is queued at once."""
        data = OrchestrationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        project = project_get_for_user(user=request.user, pk=values["project"], write=True)
        character = characters_visible_to(request.user).filter(pk=values["character"]).first()
        if character is None:
            raise Http404("No such character")
        if character.project_id != project.pk:
            raise serializers.ValidationError({"character": ["that character belongs to another project"]})
        try:
            orchestration = orchestration_start(
                user=signed_in(request.user),
                project=project,
                character=character,
                prompt=values["prompt"],
                auto_advance=values["auto_advance"],
                mode=values["mode"],
                templates=values.get("templates"),
            )
        except OrchestrationError as exc:
            raise serializers.ValidationError({"detail": [str(exc)]}) from None
        return self._answer(orchestration, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: OrchestrationSerializer})
    @action(detail=True, methods=["post"])
    def advance(self, request: Request, pk: str | None = None) -> Response:
        """Approve the next phase of an orchestration waiting for it (auto_advance off)."""
        try:
            orchestration = orchestration_advance(orchestration=self.get_object(), user=signed_in(request.user))
        except OrchestrationError as exc:
            raise serializers.ValidationError({"detail": [str(exc)]}) from None
        return self._answer(orchestration)

    @extend_schema(request=None, responses={200: OrchestrationSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Stop an orchestration and its queued or running jobs."""
        try:
            orchestration = orchestration_cancel(orchestration=self.get_object(), user=signed_in(request.user))
        except OrchestrationError as exc:
            raise serializers.ValidationError({"detail": [str(exc)]}) from None
        return self._answer(orchestration)
