"""REST API v1 for characters, their reference images, versions and variations."""

from __future__ import annotations

from typing import Any

from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from characters import selectors, services
from characters.models import Character, CharacterVersion, ReferenceImage, Variation, VariationKind
from projects.selectors import project_get_for_user
from tower.api import AccessViewSetMixin, FilterSet, IntFilter, ModelSerializer, ParentIdField

# --- Serializers ----------------------------------------------------------------------------


class CharacterSerializer(ModelSerializer):
    project = ParentIdField(source="project_id")
    reference_count = serializers.SerializerMethodField()
    primary_reference_url = serializers.SerializerMethodField()

    class Meta:
        model = Character
        fields = [
            "id",
            "project",
            "name",
            "slug",
            "design_prompt",
            "trigger_word",
            "negative_prompt",
            "learned_negatives",
            "attributes",
            "palette",
            "consistency_threshold",
            "bible",
            "reference_count",
            "primary_reference_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            "slug": {"required": False, "allow_blank": True, "help_text": "generated from the name"},
            "consistency_threshold": {"min_value": 0, "max_value": 1},
        }
        validators: list = []  # (project, slug) is checked by the service, with the row's project

    def get_reference_count(self, character: Character) -> int:
        count = getattr(character, "reference_count", None)  # annotated by the list selector
        return character.references.count() if count is None else count

    def get_primary_reference_url(self, character: Character) -> str | None:
        if hasattr(character, "primary_reference_name"):
            name = character.primary_reference_name
        else:
            name = character.references.filter(is_primary=True).values_list("image", flat=True).first()
        if not name:
            return None
        url = default_storage.url(name)
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class ReferenceSerializer(ModelSerializer):
    character = serializers.IntegerField(source="character_id", read_only=True)

    class Meta:
        model = ReferenceImage
        fields = [
            "id",
            "character",
            "image",
            "width",
            "height",
            "sha256",
            "is_primary",
            "note",
            "original_name",
            "created_at",
        ]
        read_only_fields = fields


class ReferenceUploadSerializer(serializers.Serializer):
    image = serializers.FileField(help_text="PNG, JPEG or WebP; checked by content, not by name")
    primary = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="make it the primary reference (default: only if the character has none)",
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=255, default="")


class ReferenceUpdateSerializer(serializers.Serializer):
    is_primary = serializers.BooleanField(required=False, help_text="true makes this the character's primary reference")
    note = serializers.CharField(required=False, allow_blank=True, max_length=255)


class VersionSerializer(ModelSerializer):
    character = ParentIdField(source="character_id")

    class Meta:
        model = CharacterVersion
        fields = [
            "id",
            "character",
            "name",
            "slug",
            "prompt_delta",
            "negative_delta",
            "description",
            "order",
            "created_at",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {"slug": {"required": False, "allow_blank": True}}
        validators: list = []


class VariationSerializer(ModelSerializer):
    character = ParentIdField(source="character_id")

    class Meta:
        model = Variation
        fields = [
            "id",
            "character",
            "kind",
            "name",
            "slug",
            "prompt_delta",
            "negative_delta",
            "created_at",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {"slug": {"required": False, "allow_blank": True}}
        validators: list = []


# --- Filters --------------------------------------------------------------------------------


class CharacterFilter(FilterSet):
    # Numbers, not model choices: an invisible project must look exactly like a missing one.
    project = IntFilter(field_name="project_id")

    class Meta:
        model = Character
        fields = ["project"]


class VersionFilter(FilterSet):
    character = IntFilter(field_name="character_id")

    class Meta:
        model = CharacterVersion
        fields = ["character"]


class VariationFilter(FilterSet):
    character = IntFilter(field_name="character_id")
    kind = filters.ChoiceFilter(choices=VariationKind.choices)

    class Meta:
        model = Variation
        fields = ["character", "kind"]


# --- Views ----------------------------------------------------------------------------------


class CharacterViewSet(AccessViewSetMixin, viewsets.ModelViewSet):
    """Characters of the projects you can see; ``search`` matches the name."""

    serializer_class = CharacterSerializer
    access_helper = staticmethod(selectors.character_get_for_user)
    filterset_class = CharacterFilter
    search_fields = ["name"]
    ordering_fields = ["name", "created_at", "updated_at"]

    def get_queryset(self) -> QuerySet[Character]:
        return selectors.characters_with_summary_visible_to(self.request.user)

    def perform_create(self, serializer: CharacterSerializer) -> None:
        data = dict(serializer.validated_data)
        project = project_get_for_user(user=self.request.user, pk=data.pop("project_id"), write=True)
        serializer.instance = services.character_create(project=project, **data)

    def perform_update(self, serializer: CharacterSerializer) -> None:
        data = self.changes(serializer, "project_id")
        serializer.instance = services.character_update(character=serializer.instance, **data)

    def perform_destroy(self, instance: Character) -> None:
        services.character_delete(character=instance)

    @extend_schema(methods=["GET"], responses=ReferenceSerializer(many=True))
    @extend_schema(
        methods=["POST"],
        request={"multipart/form-data": ReferenceUploadSerializer},
        responses={201: ReferenceSerializer},
        description="Upload a reference image. The first one becomes the primary reference.",
    )
    @action(detail=True, methods=["get", "post"], filter_backends=[], parser_classes=[MultiPartParser])
    def references(self, request: Request, pk: str) -> Response:
        """The character's reference images, primary first."""
        character = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.references_visible_to(request.user).filter(character=character))
            serializer = ReferenceSerializer(page, many=True, context=self.get_serializer_context())
            return self.get_paginated_response(serializer.data)
        upload = ReferenceUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data: dict[str, Any] = upload.validated_data
        reference = services.character_add_reference(
            character=character,
            upload=data["image"],
            original_name=data["image"].name,
            primary=data["primary"],
            note=data["note"],
        )
        output = ReferenceSerializer(reference, context=self.get_serializer_context())
        return Response(output.data, status=status.HTTP_201_CREATED)


@extend_schema_view(partial_update=extend_schema(request=ReferenceUpdateSerializer, responses=ReferenceSerializer))
class ReferenceViewSet(
    AccessViewSetMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """One reference image; list and upload them under ``/characters/{id}/references/``."""

    serializer_class = ReferenceSerializer
    access_helper = staticmethod(selectors.reference_get_for_user)
    http_method_names = ["get", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[ReferenceImage]:
        return selectors.references_visible_to(self.request.user)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        reference = self.get_object()
        change = ReferenceUpdateSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        reference = services.reference_update(reference=reference, **change.validated_data)
        return Response(self.get_serializer(reference).data)

    def perform_destroy(self, instance: ReferenceImage) -> None:
        services.reference_delete(reference=instance)


class VersionViewSet(AccessViewSetMixin, viewsets.ModelViewSet):
    """Ages and emotional states of characters: a prompt delta on the design prompt."""

    serializer_class = VersionSerializer
    access_helper = staticmethod(selectors.version_get_for_user)
    filterset_class = VersionFilter
    ordering_fields = ["order", "name", "created_at"]

    def get_queryset(self) -> QuerySet[CharacterVersion]:
        return selectors.versions_visible_to(self.request.user)

    def perform_create(self, serializer: VersionSerializer) -> None:
        data = dict(serializer.validated_data)
        character = selectors.character_get_for_user(user=self.request.user, pk=data.pop("character_id"), write=True)
        serializer.instance = services.version_create(character=character, **data)

    def perform_update(self, serializer: VersionSerializer) -> None:
        data = self.changes(serializer, "character_id")
        serializer.instance = services.version_update(version=serializer.instance, **data)

    def perform_destroy(self, instance: CharacterVersion) -> None:
        services.version_delete(version=instance)


class VariationViewSet(AccessViewSetMixin, viewsets.ModelViewSet):
    """Outfits, expressions and poses of characters."""

    serializer_class = VariationSerializer
    access_helper = staticmethod(selectors.variation_get_for_user)
    filterset_class = VariationFilter
    ordering_fields = ["kind", "name", "created_at"]

    def get_queryset(self) -> QuerySet[Variation]:
        return selectors.variations_visible_to(self.request.user)

    def perform_create(self, serializer: VariationSerializer) -> None:
        data = dict(serializer.validated_data)
        character = selectors.character_get_for_user(user=self.request.user, pk=data.pop("character_id"), write=True)
        serializer.instance = services.variation_create(character=character, **data)

    def perform_update(self, serializer: VariationSerializer) -> None:
        data = self.changes(serializer, "character_id")
        serializer.instance = services.variation_update(variation=serializer.instance, **data)

    def perform_destroy(self, instance: Variation) -> None:
        services.variation_delete(variation=instance)
