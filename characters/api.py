"""REST API v1 for characters, their reference images, versions and variations."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from characters import selectors, services
from characters.models import (
    AttributeType,
    Character,
    CharacterAttribute,
    CharacterVersion,
    ReferenceImage,
    Variation,
    VariationKind,
)
from projects.selectors import project_get_for_user
from tower.core.api import AccessViewSetMixin, FilterSet, IntFilter, ModelSerializer, ParentIdField

# --- Serializers ----------------------------------------------------------------------------


class AttributeListSerializer(serializers.ListSerializer):
    def to_internal_value(self, data: Any) -> Any:
        # The old form, {"hair": "silver"}, is accepted as a convenience and read as rows.
        if isinstance(data, dict):
            data = services.attributes_from_dict(data)
        return super().to_internal_value(data)


class AttributeSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(required=False, help_text="an existing attribute of this character to change")
    type = serializers.ChoiceField(choices=AttributeType.choices)
    priority = serializers.IntegerField(
        required=False, default=50, min_value=0, max_value=100, help_text="higher comes first in the prompt"
    )

    class Meta:
        model = CharacterAttribute
        fields = ["id", "type", "value", "prompt_tokens", "priority"]
        list_serializer_class = AttributeListSerializer
        validators: list = []  # one per type: checked by the service over the whole list


class CharacterSerializer(ModelSerializer):
    project = ParentIdField(source="project_id")
    attributes = AttributeSerializer(
        source="attribute_set",
        many=True,
        required=False,
        help_text=(
            "structured traits, joined to the resolved prompt after the design prompt, highest priority first "
            "(prompt_tokens, else value); one per type. A write replaces the whole list: a row with an id (or "
            "else of a type the character has) is changed, others are created, missing ones deleted. The old form, "
            '{"hair": "silver"}, is accepted on write as a convenience (a known key is the type, any other key '
            "becomes the 'other' attribute)."
        ),
    )
    effective_similarity_threshold = serializers.SerializerMethodField(
        help_text="the face similarity this character's outputs must reach: consistency_threshold, else the project's"
    )
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
            "effective_similarity_threshold",
            "palette_gated",
            "palette_threshold",
            "bible",
            "reference_count",
            "primary_reference_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {
            "slug": {"required": False, "allow_blank": True, "help_text": "generated from the name"},
            "consistency_threshold": {
                "min_value": 0,
                "max_value": 1,
                "help_text": "overrides the project's threshold_similarity; null follows the project's",
            },
            "palette_threshold": {
                "min_value": 0,
                "max_value": 100,
                "help_text": "largest mean ΔE (Lab) when palette_gated; null: the project's threshold_palette",
            },
        }
        validators: list = []  # (project, slug) is checked by the service, with the row's project

    def get_effective_similarity_threshold(self, character: Character) -> float:
        return selectors.similarity_threshold(character)

    def get_reference_count(self, character: Character) -> int:
        count = getattr(character, "reference_count", None)  # annotated by the list selector
        return character.references.count() if count is None else count

    def get_primary_reference_url(self, character: Character) -> str | None:
        if hasattr(character, "primary_reference_name"):
            name = character.primary_reference_name
        else:
            own = character.references.filter(is_primary=True, version__isnull=True)  # not a version's
            name = own.values_list("image", flat=True).first()
        if not name:
            return None
        url = default_storage.url(name)
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class ReferenceSerializer(ModelSerializer):
    character = serializers.IntegerField(source="character_id", read_only=True)
    version = serializers.IntegerField(
        source="version_id", read_only=True, allow_null=True, help_text="null: a reference of the character itself"
    )

    class Meta:
        model = ReferenceImage
        fields = [
            "id",
            "character",
            "version",
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
    version = serializers.IntegerField(
        required=False,
        allow_null=True,
        default=None,
        help_text="a version of the same character: the reference is that version's own (its first is its primary)",
    )


class ReferenceCreateSerializer(ReferenceUploadSerializer):
    character = serializers.IntegerField(help_text="the character the reference belongs to")


class ReferenceUpdateSerializer(serializers.Serializer):
    is_primary = serializers.BooleanField(
        required=False, help_text="true makes this the primary reference of its character (or of its version)"
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=255)


class VersionSerializer(ModelSerializer):
    character = ParentIdField(source="character_id")
    references = ReferenceSerializer(
        many=True,
        read_only=True,
        help_text="the version's own references, primary first; upload with POST /api/v1/references/ and version",
    )

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
            "age_state",
            "emotional_state",
            "order",
            "references",
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
            "replaces",
            "created_at",
        ]
        read_only_fields = ["created_at"]
        extra_kwargs = {
            "slug": {"required": False, "allow_blank": True},
            "replaces": {"help_text": "the attribute type it is worn instead of (an outfit's default: outfit)"},
        }
        validators: list = []


# --- Filters --------------------------------------------------------------------------------


class CharacterFilter(FilterSet):
    # Numbers, not model choices: an invisible project must look exactly like a missing one.
    project = IntFilter(field_name="project_id")

    class Meta:
        model = Character
        fields = ["project"]


class ReferenceFilter(FilterSet):
    character = IntFilter(field_name="character_id")
    version = IntFilter(field_name="version_id")

    class Meta:
        model = ReferenceImage
        fields = ["character", "version"]


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

    @staticmethod
    def _fields(data: dict[str, Any]) -> dict[str, Any]:
        if "attribute_set" in data:
            data["attributes"] = [dict(row) for row in data.pop("attribute_set")]
        return data

    def perform_create(self, serializer: BaseSerializer[Character]) -> None:
        data = self._fields(dict(serializer.validated_data))
        project = project_get_for_user(user=self.request.user, pk=data.pop("project_id"), write=True)
        serializer.instance = services.character_create(project=project, **data)

    def perform_update(self, serializer: BaseSerializer[Character]) -> None:
        data = self._fields(self.changes(serializer, "project_id"))
        instance = serializer.instance
        assert instance is not None  # an update's serializer holds its row
        serializer.instance = services.character_update(character=instance, **data)

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
        reference = _add_reference(character, upload.validated_data)
        output = ReferenceSerializer(reference, context=self.get_serializer_context())
        return Response(output.data, status=status.HTTP_201_CREATED)


def _add_reference(character: Character, data: dict[str, Any]) -> ReferenceImage:
    """Store an upload as a reference of ``character``, or of its version ``data["version"]``."""
    version = None
    if data.get("version") is not None:
        # Another character's version (visible or not) is the same mistake: a 400 naming the field.
        version = CharacterVersion.objects.filter(pk=data["version"], character=character).first()
        if version is None:
            raise ValidationError({"version": f"no version {data['version']} of character {character.pk}"})
    return services.character_add_reference(
        character=character,
        upload=data["image"],
        original_name=data["image"].name,
        primary=data["primary"],
        note=data["note"],
        version=version,
    )


@extend_schema_view(
    partial_update=extend_schema(request=ReferenceUpdateSerializer, responses=ReferenceSerializer),
    create=extend_schema(
        request={"multipart/form-data": ReferenceCreateSerializer},
        responses={201: ReferenceSerializer},
        description=(
            "Upload a reference image of a character, or with `version` of one of its versions (another "
            "character's version is a 400). The first reference of the character (or of the version) "
            "becomes its primary."
        ),
    ),
)
class ReferenceViewSet(
    AccessViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Reference images of the characters you can see (``?character=``, ``?version=``)."""

    serializer_class = ReferenceSerializer
    access_helper = staticmethod(selectors.reference_get_for_user)
    filterset_class = ReferenceFilter
    ordering_fields = ["created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[ReferenceImage]:
        return selectors.references_visible_to(self.request.user).order_by("character_id", "-is_primary", "created_at")

    def get_parsers(self) -> list[Any]:
        if self.request is not None and self.request.method == "POST":
            return [MultiPartParser()]
        return super().get_parsers()

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        upload = ReferenceCreateSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        data: dict[str, Any] = upload.validated_data
        character = selectors.character_get_for_user(user=request.user, pk=data["character"], write=True)
        reference = _add_reference(character, data)
        return Response(self.get_serializer(reference).data, status=status.HTTP_201_CREATED)

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

    def perform_create(self, serializer: BaseSerializer[CharacterVersion]) -> None:
        data = dict(serializer.validated_data)
        character = selectors.character_get_for_user(user=self.request.user, pk=data.pop("character_id"), write=True)
        serializer.instance = services.version_create(character=character, **data)

    def perform_update(self, serializer: BaseSerializer[CharacterVersion]) -> None:
        data = self.changes(serializer, "character_id")
        instance = serializer.instance
        assert instance is not None  # an update's serializer holds its row
        serializer.instance = services.version_update(version=instance, **data)

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

    def perform_create(self, serializer: BaseSerializer[Variation]) -> None:
        data = dict(serializer.validated_data)
        character = selectors.character_get_for_user(user=self.request.user, pk=data.pop("character_id"), write=True)
        serializer.instance = services.variation_create(character=character, **data)

    def perform_update(self, serializer: BaseSerializer[Variation]) -> None:
        data = self.changes(serializer, "character_id")
        instance = serializer.instance
        assert instance is not None  # an update's serializer holds its row
        serializer.instance = services.variation_update(variation=instance, **data)

    def perform_destroy(self, instance: Variation) -> None:
        services.variation_delete(variation=instance)
