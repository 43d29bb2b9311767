"""REST API v1: the router that assembles the apps' endpoints, and the caller's API tokens."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.urls import re_path
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from characters.api import CharacterViewSet, ReferenceViewSet, VariationViewSet, VersionViewSet
from generation.api import AssetViewSet, InputImageViewSet, TemplateViewSet
from generation.api_jobs import JobViewSet
from generation.assembly_api import AssemblyViewSet, FilmEpisodeViewSet
from projects.api import ProjectViewSet
from quality.api import JobQualityView, PhasesView, QualityViewSet
from quality.movie_api import MovieSceneViewSet
from quality.movie_feedback_api import FeedbackViewSet
from quality.orchestration_api import OrchestrationViewSet
from tower.core.api import Router
from tower.core.users import signed_in
from tower.models import ApiToken, hash_token, new_raw_token

# --- Token writes (the raw key exists only in the creation response) -------------------------


@transaction.atomic
def api_token_create(*, user: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``user`` and its raw key; only the key's SHA-256 is stored."""
    name = name.strip()
    if ApiToken.objects.filter(user=user, name=name).exists():
        raise ValidationError({"name": "you already have a token with this name"})
    raw = new_raw_token()
    token = ApiToken(user=user, name=name, key_hash=hash_token(raw), prefix=raw[:12])
    token.full_clean()
    token.save()
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> None:
    token.delete()


# --- Token API ------------------------------------------------------------------------------


class TokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at"]
        read_only_fields = ["prefix", "created_at", "last_used_at"]
        validators: list = []  # (user, name) is checked by api_token_create


class TokenCreatedSerializer(TokenSerializer):
    key = serializers.CharField(
        read_only=True,
        help_text="the raw token, shown only in this response: send it as 'Authorization: Bearer <key>'",
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]


@extend_schema_view(
    create=extend_schema(
        request=TokenSerializer,
        responses={201: TokenCreatedSerializer},
        description="Create a token. The raw key is in this response and never again.",
    ),
    destroy=extend_schema(description="Revoke the token: requests that use it get 401."),
)
class TokenViewSet(
    mixins.ListModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Your own API tokens (never another user's, never the key after creation)."""

    serializer_class = TokenSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[ApiToken]:
        user = self.request.user
        if not isinstance(user, User):  # the schema generator asks without a user: no tokens
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user=user)

    def get_serializer_class(self) -> type[TokenSerializer]:
        return TokenCreatedSerializer if self.action == "create" else TokenSerializer

    def perform_create(self, serializer: serializers.BaseSerializer[ApiToken]) -> None:
        name = serializer.validated_data["name"]
        token, raw = api_token_create(user=signed_in(self.request.user), name=name)
        token.key = raw  # type: ignore[attr-defined]  # for the response's read-only key field only, never stored
        serializer.instance = token

    def perform_destroy(self, instance: ApiToken) -> None:
        api_token_revoke(token=instance)


router = Router()
router.register("projects", ProjectViewSet, basename="project")
router.register("episodes", FilmEpisodeViewSet, basename="episode")
router.register("scenes", MovieSceneViewSet, basename="scene")
router.register("characters", CharacterViewSet, basename="character")
router.register("references", ReferenceViewSet, basename="reference")
router.register("versions", VersionViewSet, basename="version")
router.register("variations", VariationViewSet, basename="variation")
router.register("jobs", JobViewSet, basename="job")
router.register("assets", AssetViewSet, basename="asset")
router.register("input-images", InputImageViewSet, basename="input-image")
router.register("templates", TemplateViewSet, basename="template")
router.register("tokens", TokenViewSet, basename="token")
router.register("quality", QualityViewSet, basename="quality")
router.register("orchestrations", OrchestrationViewSet, basename="orchestration")
router.register("assemblies", AssemblyViewSet, basename="assembly")
router.register("feedback", FeedbackViewSet, basename="feedback")

urlpatterns = [
    *router.urls,
    re_path(r"^jobs/(?P<job_pk>[0-9]+)/quality/?$", JobQualityView.as_view(), name="job-quality-api"),
    re_path(r"^phases/?$", PhasesView.as_view(), name="phases-api"),
]
