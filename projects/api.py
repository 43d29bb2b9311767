"""REST API v1 for projects, their style and members, episodes and scenes."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from projects import selectors, services
from projects.models import (
    ArtKind,
    Episode,
    GenerationStyle,
    MemberRole,
    Membership,
    Phase,
    Project,
    Scene,
)
from tower.core.api import AccessViewSetMixin, FilterSet, IntFilter, ModelSerializer, ParentIdField, parse_id
from tower.core.users import signed_in


def _as_drf_error(exc: DjangoValidationError, field: str) -> serializers.ValidationError:
    messages = exc.message_dict.get(field) if hasattr(exc, "error_dict") else None
    return serializers.ValidationError(messages or exc.messages)


# --- Serializers ----------------------------------------------------------------------------


class ProjectPhaseTemplates(serializers.Serializer):
    """The workflow template (slug) of each orchestration phase; no other key is accepted."""

    sheet = serializers.SlugField(required=False, max_length=80, help_text="phase 1: a character_sheet template")
    loop = serializers.SlugField(required=False, max_length=80, help_text="phase 2: a template of kind loop")
    video = serializers.SlugField(required=False, max_length=80, help_text="phase 3: a template of kind video")


@extend_schema_field(ProjectPhaseTemplates)
class PhaseTemplatesField(serializers.JSONField):
    pass


# The pose bounds are the service's (its messages name the pose: "pose 2 is empty"), documented here.
@extend_schema_field(
    {
        "type": "array",
        "items": {"type": "string", "minLength": 1, "maxLength": services.POSE_MAX_LENGTH},
        "minItems": 1,
        "maxItems": services.SHEET_POSES_MAX,
    }
)
class SheetPosesField(serializers.ListField):
    pass


class ProjectSerializer(ModelSerializer):
    sheet_poses = SheetPosesField(
        child=serializers.CharField(allow_blank=True),
        min_length=1,
        max_length=services.SHEET_POSES_MAX,
        required=False,
        help_text="the phase-1 character sheet's poses, one panel each (trimmed; none empty)",
    )
    phase_templates = PhaseTemplatesField(
        required=False,
        help_text=(
            "the workflow template (slug) each phase of an orchestration uses when it names none; "
            "a key left out follows Tower's default. Only the shape is checked here: an unknown "
            "slug or one of the wrong kind is refused when an orchestration starts"
        ),
    )
    owner_username = serializers.CharField(source="owner.username", read_only=True)
    role = serializers.SerializerMethodField(help_text="your role: owner, editor or viewer")

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "owner",
            "owner_username",
            "role",
            "art_kind",
            "story_bible",
            "phase",
            "threshold_similarity",
            "threshold_aesthetic",
            "threshold_temporal",
            "threshold_motion",
            "phase_pass_ratio",
            "phase_window",
            "max_regenerations",
            "advance_unevaluated",
            "threshold_palette",
            "threshold_face_quality",
            "threshold_overall",
            "sheet_poses",
            "phase_templates",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["owner", "phase", "created_at", "updated_at"]
        extra_kwargs = {
            "slug": {"required": False, "allow_blank": True, "help_text": "generated from the name"},
            "threshold_similarity": {"min_value": 0, "max_value": 1},
            "threshold_aesthetic": {"min_value": 0, "max_value": 10},
            "threshold_temporal": {"min_value": 0, "max_value": 1},
            "threshold_motion": {"min_value": 0, "max_value": 1},
            "phase_pass_ratio": {"min_value": 0.01, "max_value": 1},
            "phase_window": {"min_value": 1},
            "max_regenerations": {"min_value": 0, "max_value": services.MAX_REGENERATIONS},
            "threshold_palette": {"min_value": 0, "max_value": 100},
            "threshold_face_quality": {"min_value": 0, "max_value": 1},
            "threshold_overall": {"min_value": 0, "max_value": 1},
        }

    def get_role(self, project: Project) -> str | None:
        user = self.context["request"].user
        if project.owner_id == user.pk:
            return "owner"
        mine = getattr(project, "my_memberships", None)
        if mine is not None:  # prefetched by the list view
            return mine[0].role if mine else None
        return selectors.project_role(project=project, user=user)

    def validate_story_bible(self, value: Any) -> dict[str, Any]:
        try:
            return services.validate_story_bible(value)
        except DjangoValidationError as exc:
            raise _as_drf_error(exc, "story_bible") from None

    def validate_sheet_poses(self, value: Any) -> list[str]:
        try:
            return services.validate_sheet_poses(value)
        except DjangoValidationError as exc:
            raise _as_drf_error(exc, "sheet_poses") from None

    def validate_phase_templates(self, value: Any) -> dict[str, str]:
        try:
            return services.validate_phase_templates(value)
        except DjangoValidationError as exc:
            raise _as_drf_error(exc, "phase_templates") from None


class PresetSerializer(serializers.Serializer):
    steps = serializers.IntegerField()
    cfg = serializers.FloatField()
    denoise = serializers.FloatField()


class PresetsSerializer(serializers.Serializer):
    draft = PresetSerializer()
    production = PresetSerializer()


class StyleSerializer(ModelSerializer):
    presets = serializers.SerializerMethodField()

    class Meta:
        model = GenerationStyle
        fields = ["project", *sorted(services.STYLE_FIELDS), "presets", "updated_at"]
        read_only_fields = ["project", "updated_at"]
        extra_kwargs = {
            "width": {"min_value": 64, "max_value": 8192, "help_text": "a multiple of 8"},
            "height": {"min_value": 64, "max_value": 8192, "help_text": "a multiple of 8"},
            "draft_steps": {"min_value": 1, "max_value": 200},
            "production_steps": {"min_value": 1, "max_value": 200},
            "draft_cfg": {"min_value": 0, "max_value": 30},
            "production_cfg": {"min_value": 0, "max_value": 30},
            "draft_denoise": {"min_value": 0, "max_value": 1},
            "production_denoise": {"min_value": 0, "max_value": 1},
            "clip_skip": {"min_value": 1, "max_value": 12},
            "fps": {"min_value": 1, "max_value": 120},
        }

    @extend_schema_field(PresetsSerializer)
    def get_presets(self, style: GenerationStyle) -> dict[str, Any]:
        return {"draft": style.preset("draft"), "production": style.preset("production")}

    def validate_loras(self, value: Any) -> list[dict[str, Any]]:
        try:
            return services.validate_loras(value)
        except DjangoValidationError as exc:
            raise _as_drf_error(exc, "loras") from None


class MembershipSerializer(ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["user_id", "username", "role", "created_at"]
        read_only_fields = fields


class MemberInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=MemberRole.choices, default=MemberRole.EDITOR)


class EpisodeSerializer(ModelSerializer):
    project = ParentIdField(source="project_id")

    class Meta:
        model = Episode
        fields = ["id", "project", "number", "title", "synopsis", "soundtrack", "created_at"]
        read_only_fields = ["soundtrack", "created_at"]
        extra_kwargs = {"number": {"required": False, "min_value": 1, "help_text": "default: next"}}
        validators: list = []  # (project, number) is checked by the service, with the row's project


class SceneSerializer(ModelSerializer):
    episode = ParentIdField(source="episode_id")
    project = serializers.IntegerField(source="episode.project_id", read_only=True)
    characters: serializers.PrimaryKeyRelatedField[Any] = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Scene
        fields = [
            "id",
            "episode",
            "project",
            "number",
            "title",
            "description",
            "mood",
            "camera",
            "lighting",
            "duration_seconds",
            "continuity",
            "characters",
            "created_at",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {
            "number": {"required": False, "min_value": 1, "help_text": "default: next"},
            "duration_seconds": {"max_value": 600, "help_text": "more than 0, at most 600"},
        }
        validators: list = []

    def validate_duration_seconds(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("must be more than 0 seconds")
        return value

    def validate_continuity(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("must be an object")
        return value


# --- Filters --------------------------------------------------------------------------------


class ProjectFilter(FilterSet):
    phase = filters.TypedChoiceFilter(choices=Phase.choices, coerce=int)
    art_kind = filters.ChoiceFilter(choices=ArtKind.choices)

    class Meta:
        model = Project
        fields = ["phase", "art_kind"]


class EpisodeFilter(FilterSet):
    # Numbers, not model choices: an invisible project must look exactly like a missing one.
    project = IntFilter(field_name="project_id")

    class Meta:
        model = Episode
        fields = ["project"]


class SceneFilter(FilterSet):
    project = IntFilter(field_name="episode__project_id")
    episode = IntFilter(field_name="episode_id")

    class Meta:
        model = Scene
        fields = ["project", "episode"]


# --- Views ----------------------------------------------------------------------------------

_USER_ID = OpenApiParameter("user_id", OpenApiTypes.INT, OpenApiParameter.PATH)


@extend_schema_view(
    destroy=extend_schema(description="Delete the project and everything in it. Owner only."),
)
class ProjectViewSet(AccessViewSetMixin, viewsets.ModelViewSet):
    """Projects you own or belong to."""

    serializer_class = ProjectSerializer
    access_helper = staticmethod(selectors.project_get_for_user)
    filterset_class = ProjectFilter
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "created_at", "updated_at"]

    def get_queryset(self) -> QuerySet[Project]:
        user = self.request.user  # anonymous while drf-spectacular builds the schema
        mine = Membership.objects.filter(user=user) if isinstance(user, User) else Membership.objects.none()
        mine = mine.only("project_id", "role")
        return selectors.projects_visible_to(user).prefetch_related(
            Prefetch("memberships", queryset=mine, to_attr="my_memberships")
        )

    def get_object(self) -> Project:
        if self.action == "destroy":
            return selectors.project_get_for_owner(user=self.request.user, pk=self.kwargs["pk"])
        return super().get_object()

    def perform_create(self, serializer: BaseSerializer[Project]) -> None:
        data = serializer.validated_data
        serializer.instance = services.project_create(owner=signed_in(self.request.user), **data)

    def perform_update(self, serializer: BaseSerializer[Project]) -> None:
        data = serializer.validated_data
        instance = serializer.instance
        assert instance is not None  # an update's serializer holds its row
        serializer.instance = services.project_update(project=instance, **data)

    def perform_destroy(self, instance: Project) -> None:
        services.project_delete(project=instance)

    @extend_schema(methods=["GET"], responses=StyleSerializer)
    @extend_schema(methods=["PUT", "PATCH"], request=StyleSerializer, responses=StyleSerializer)
    @action(detail=True, methods=["get", "put", "patch"], filter_backends=[], pagination_class=None)
    def style(self, request: Request, pk: str) -> Response:
        """The project's generation style, with its draft and production presets."""
        project = self.get_object()
        if request.method == "GET":
            return Response(StyleSerializer(project.style).data)
        serializer = StyleSerializer(project.style, data=request.data, partial=request.method == "PATCH")
        serializer.is_valid(raise_exception=True)
        style = services.style_update(project=project, **serializer.validated_data)
        return Response(StyleSerializer(style).data)

    @extend_schema(methods=["GET"], responses=MembershipSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request=MemberInputSerializer,
        responses={201: MembershipSerializer},
        description="Add a member or change their role. Owner only.",
    )
    @action(detail=True, methods=["get", "post"], filter_backends=[])
    def members(self, request: Request, pk: str) -> Response:
        """The project's members (the owner is not listed; see the project's ``owner``)."""
        if request.method == "GET":
            project = selectors.project_get_for_user(user=request.user, pk=pk)
            page = self.paginate_queryset(selectors.memberships_of(project))
            return self.get_paginated_response(MembershipSerializer(page, many=True).data)
        project = selectors.project_get_for_owner(user=request.user, pk=pk)
        serializer = MemberInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.project_member_set(project=project, **serializer.validated_data)
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[_USER_ID], request=None, responses={204: None})
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"members/(?P<user_id>[^/.]+)",
        url_name="member-detail",
        filter_backends=[],
    )
    def remove_member(self, request: Request, pk: str, user_id: str) -> Response:
        """Remove a member from the project. Owner only."""
        project = selectors.project_get_for_owner(user=request.user, pk=pk)
        try:
            services.project_member_remove(project=project, user_id=parse_id(user_id))
        except services.ProjectError:
            raise NotFound("That user is not a member of this project.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class EpisodeViewSet(AccessViewSetMixin, viewsets.ModelViewSet):
    serializer_class = EpisodeSerializer
    access_helper = staticmethod(selectors.episode_get_for_user)
    filterset_class = EpisodeFilter
    search_fields = ["title"]
    ordering_fields = ["number", "created_at"]

    def get_queryset(self) -> QuerySet[Episode]:
        return selectors.episodes_visible_to(self.request.user)

    def perform_create(self, serializer: BaseSerializer[Episode]) -> None:
        data = dict(serializer.validated_data)
        project = selectors.project_get_for_user(user=self.request.user, pk=data.pop("project_id"), write=True)
        serializer.instance = services.episode_create(project=project, **data)

    def perform_update(self, serializer: BaseSerializer[Episode]) -> None:
        data = self.changes(serializer, "project_id")
        instance = serializer.instance
        assert instance is not None  # an update's serializer holds its row
        serializer.instance = services.episode_update(episode=instance, **data)

    def perform_destroy(self, instance: Episode) -> None:
        services.episode_delete(episode=instance)


class SceneViewSet(AccessViewSetMixin, viewsets.ModelViewSet):
    serializer_class = SceneSerializer
    access_helper = staticmethod(selectors.scene_get_for_user)
    filterset_class = SceneFilter
    search_fields = ["title", "description"]
    ordering_fields = ["number", "created_at"]

    def get_queryset(self) -> QuerySet[Scene]:
        return selectors.scenes_visible_to(self.request.user).prefetch_related("characters")

    def perform_create(self, serializer: BaseSerializer[Scene]) -> None:
        data = dict(serializer.validated_data)
        episode = selectors.episode_get_for_user(user=self.request.user, pk=data.pop("episode_id"), write=True)
        serializer.instance = services.scene_create(episode=episode, **data)

    def perform_update(self, serializer: BaseSerializer[Scene]) -> None:
        data = self.changes(serializer, "episode_id")
        instance = serializer.instance
        assert instance is not None  # an update's serializer holds its row
        serializer.instance = services.scene_update(scene=instance, **data)

    def perform_destroy(self, instance: Scene) -> None:
        services.scene_delete(scene=instance)
