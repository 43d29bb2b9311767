"""REST API v1 for scenes with movie production (issue 20 items 2, 3 and 6), over ``projects.api``'s scenes.

- ``POST/PATCH /scenes``: ``characters`` (ids, in the scene's project; the first one's reference starts
  the scene), ``duration_seconds`` (more than 0, at most 600), ``memory`` (this scene's own entries,
  through ``projects.memory``); ``status`` (pending, running, complete, failed) is read-only;
- ``POST /scenes/{id}/generate`` ``{"template": SLUG, "segments": N, "motion_prompt": TEXT,
  "force_reason": TEXT}`` (all optional) → 201 with the run, its segments and the jobs submitted so
  far (segment 1's; the rest are submitted as the chain moves);
- ``GET /scenes/{id}/segments``: the newest run's segments in order;
- ``POST /scenes/{id}/segments/{number}/retry``: the newest run's failed segment ``number`` tried
  again (``quality.movie.chain.segment_retry``) → 200 with the run as ``generate`` answers it;
- ``GET``/``PATCH /scenes/{id}/memory``: the scene's own memory, the effective one (carried from the
  scenes before unless set here) and the change log.

Access as the rest of v1: a scene you cannot see is a 404, a viewer's write a 403, bad input a 400
(service and domain errors through ``tower.core.api.exception_handler``).
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

from projects import selectors
from projects.api import SceneSerializer, SceneViewSet
from projects.models import Scene
from quality.models import SceneRun, Segment
from quality.movie.chain import MOTION_PROMPT_MAX_LENGTH, scene_generate, segment_retry
from quality.movie.chain_scenes import scene_create_cast, scene_update_cast
from quality.movie.plan import MAX_SEGMENTS
from tower.core.users import signed_in


class CharacterIdsField(serializers.ListField):
    """Character ids in; the scene's characters' ids out (checked against the scene's project by the service)."""

    def to_representation(self, data: Any) -> list[int]:
        return sorted(c.pk for c in data.all())


class MovieSceneSerializer(SceneSerializer):
    characters = CharacterIdsField(  # type: ignore[assignment]  # ids in, ids out (the parent reads only)
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        max_length=64,
        help_text="the scene's characters (ids in its project); the first one's reference starts the scene",
    )
    memory = serializers.JSONField(
        required=False, help_text="entries merged into this scene's own continuity memory (see /memory)"
    )

    class Meta(SceneSerializer.Meta):
        fields = [*SceneSerializer.Meta.fields, "memory", "status", "updated_at"]
        read_only_fields = ["created_at", "status", "updated_at"]


class SegmentSerializer(serializers.ModelSerializer):
    jobs = serializers.SerializerMethodField(help_text="every attempt's job, oldest first")

    class Meta:
        model = Segment
        fields = [
            "id",
            "run",
            "number",
            "status",
            "attempts",
            "job",
            "jobs",
            "motion_prompt",
            "seed",
            "prompt_id",
            "params",
            "first_frame",
            "last_frame",
            "output",
            "frame_consistency",
            "motion_smoothness",
            "overall",
            "join_ssim",
            "join_flow",
            "join_passed",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_jobs(self, segment: Segment) -> list[int]:
        return sorted(job.pk for job in segment.jobs.all())


class SceneRunSerializer(serializers.ModelSerializer):
    template: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = SceneRun
        fields = ["id", "scene", "template", "created_by", "segments_planned", "status", "reasons", "created_at"]
        read_only_fields = fields


class GenerateSerializer(serializers.Serializer):
    template = serializers.CharField(required=False, max_length=80, help_text="a segment template's slug")
    segments = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_SEGMENTS, help_text="default: planned from the duration"
    )
    motion_prompt = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=MOTION_PROMPT_MAX_LENGTH
    )
    force_reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=MOTION_PROMPT_MAX_LENGTH,
        help_text="why the segments run although a character's phase-2 gate is closed (editors; recorded on each job)",
    )


class GeneratedSerializer(serializers.Serializer):
    run = SceneRunSerializer()
    segments = SegmentSerializer(many=True)
    jobs = serializers.ListField(child=serializers.IntegerField(), help_text="the segment jobs submitted so far")


class MemoryChangeSerializer(serializers.Serializer):
    user = serializers.CharField(allow_null=True)
    changes = serializers.JSONField()
    created_at = serializers.DateTimeField()


class MemorySerializer(serializers.Serializer):
    scene = serializers.IntegerField()
    memory = serializers.JSONField(help_text="set on this scene")
    carried = serializers.JSONField(help_text="what the scenes before it leave to it")
    effective = serializers.JSONField(help_text="what its segments are generated with: carried, unless set here")
    changes = MemoryChangeSerializer(many=True)


class MemoryInputSerializer(serializers.Serializer):
    memory = serializers.JSONField(
        help_text="characters / story / style entries to merge into this scene's own (null removes one)"
    )


def _segments_of(run: SceneRun | None) -> QuerySet[Segment]:
    if run is None:
        return Segment.objects.none()
    return Segment.objects.filter(run=run).order_by("number").prefetch_related("jobs")


def _run_body(run: SceneRun) -> dict[str, Any]:
    segments = list(_segments_of(run))
    jobs = sorted({job.pk for segment in segments for job in segment.jobs.all()})
    answer = {"run": SceneRunSerializer(run).data, "segments": SegmentSerializer(segments, many=True).data}
    return {**answer, "jobs": jobs}


def _memory_body(scene: Scene) -> dict[str, Any]:
    from projects.memory import memory_carried, memory_changes, memory_effective

    return {
        "scene": scene.pk,
        "memory": scene.memory or {},
        "carried": memory_carried(scene),
        "effective": memory_effective(scene),
        "changes": [
            {"user": c.user.username if c.user else None, "changes": c.changes, "created_at": c.created_at}
            for c in memory_changes(scene)[:50]
        ],
    }


class MovieSceneViewSet(SceneViewSet):
    """Scenes with their characters, memory, status and generated segments."""

    serializer_class = MovieSceneSerializer
    throttle_scope = "generation"

    def get_throttles(self) -> list[BaseThrottle]:
        if self.action in {"generate", "retry"}:  # queues GPU work
            return [ScopedRateThrottle()]
        return super().get_throttles()

    def perform_create(self, serializer: BaseSerializer[Scene]) -> None:
        data = dict(serializer.validated_data)
        episode = selectors.episode_get_for_user(user=self.request.user, pk=data.pop("episode_id"), write=True)
        serializer.instance = scene_create_cast(episode=episode, user=signed_in(self.request.user), **data)

    def perform_update(self, serializer: BaseSerializer[Scene]) -> None:
        data = self.changes(serializer, "episode_id")
        instance = serializer.instance
        assert instance is not None  # an update's serializer holds its row
        serializer.instance = scene_update_cast(scene=instance, user=signed_in(self.request.user), **data)

    @extend_schema(request=GenerateSerializer, responses={201: GeneratedSerializer})
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def generate(self, request: Request, pk: str | None = None) -> Response:
        """Plan the scene's segments and run them in order, each from the last frame before it."""
        scene = selectors.scene_get_for_user(user=request.user, pk=pk or "", write=True)
        body = GenerateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = body.validated_data
        run = scene_generate(
            scene=scene,
            user=signed_in(request.user),
            template=values.get("template"),
            segments=values.get("segments"),
            motion_prompt=values["motion_prompt"],
            force_reason=values["force_reason"],
        )
        return Response(_run_body(run), status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: GeneratedSerializer},
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH, description="the segment's number, from 1")],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path=r"segments/(?P<number>[0-9]{1,5})/retry",
        filter_backends=[],
        pagination_class=None,
    )
    def retry(self, request: Request, pk: str | None = None, number: str = "") -> Response:
        """Try the newest run's failed segment ``number`` again; the chain goes on from it."""
        scene = selectors.scene_get_for_user(user=request.user, pk=pk or "", write=True)
        run = SceneRun.objects.filter(scene=scene).order_by("-created_at", "-id").first()
        segment = Segment.objects.filter(run=run, number=int(number)).first() if run is not None else None
        if segment is None:
            raise NotFound(f"scene {scene.number} has no segment {int(number)}")
        run = segment_retry(segment=segment, user=signed_in(request.user))
        return Response(_run_body(run))

    @extend_schema(request=None, responses={200: SegmentSerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def segments(self, request: Request, pk: str | None = None) -> Response:
        """The newest run's segments, in order (an empty list before the scene is generated)."""
        scene = selectors.scene_get_for_user(user=request.user, pk=pk or "")
        run = SceneRun.objects.filter(scene=scene).order_by("-created_at", "-id").first()
        return Response(SegmentSerializer(_segments_of(run), many=True).data)

    @extend_schema(methods=["GET"], request=None, responses={200: MemorySerializer})
    @extend_schema(methods=["PATCH"], request=MemoryInputSerializer, responses={200: MemorySerializer})
    @action(detail=True, methods=["get", "patch"], filter_backends=[], pagination_class=None)
    def memory(self, request: Request, pk: str | None = None) -> Response:
        """The scene's continuity memory: its own entries, the effective memory and who changed what."""
        write = request.method == "PATCH"
        scene = selectors.scene_get_for_user(user=request.user, pk=pk or "", write=write)
        if write:
            body = MemoryInputSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            scene = scene_update_cast(scene=scene, user=signed_in(request.user), memory=body.validated_data["memory"])
            scene.refresh_from_db()
        return Response(_memory_body(scene))
