"""REST API v1 for an episode's film (issue 20 items 5 and 6).

- ``GET /episodes/{id}`` carries ``film``: the asset id of the newest succeeded assembly of the whole
  episode, ``null`` before one;
- ``POST /episodes/{id}/assemble`` ``{"container": "mp4"|"webm", "crossfade_frames": N}`` → 202 with
  the assembly (a worker's job: ``status``, ``progress``, then ``asset``, ``chapters``, ``stream_copy``);
- ``GET /assemblies`` (``?episode=``, ``?status=``) and ``GET /assemblies/{id}`` to follow it.

As everywhere: an episode or assembly of a project you cannot see is a 404, a viewer's assemble a 403,
an episode with no scenes or with scenes not generated yet a 400 saying which.
"""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, ScopedRateThrottle

from generation.assembly_task import assembly_start
from generation.film.assembly import CONTAINERS, MAX_CROSSFADE
from generation.models import Assembly, AssemblyStatus
from projects.api import EpisodeSerializer, EpisodeViewSet
from projects.models import Episode
from projects.selectors import project_ids_visible_to
from tower.core.api import FilterSet, IntFilter, parse_id
from tower.core.users import signed_in


def films() -> QuerySet[Assembly]:
    """Succeeded whole-episode assemblies with a film, newest first."""
    return Assembly.objects.filter(scene__isnull=True, status=AssemblyStatus.SUCCEEDED, asset__isnull=False).order_by(
        "-finished_at", "-pk"
    )


class EpisodeFilmSerializer(EpisodeSerializer):
    film = serializers.SerializerMethodField(help_text="the assembled film's asset id (the newest); null before")

    class Meta(EpisodeSerializer.Meta):
        fields = [*EpisodeSerializer.Meta.fields, "film"]
        read_only_fields = [*EpisodeSerializer.Meta.read_only_fields, "film"]

    def get_film(self, episode: Episode) -> int | None:
        annotated = getattr(episode, "film_asset", ...)  # the viewset's queryset annotates it
        if annotated is not ...:
            return annotated
        return films().filter(episode=episode).values_list("asset_id", flat=True).first()


class AssembleSerializer(serializers.Serializer):
    container = serializers.ChoiceField(choices=CONTAINERS, default="mp4", help_text="mp4 (H.264) or webm (VP9)")
    crossfade_frames = serializers.IntegerField(
        min_value=0, max_value=MAX_CROSSFADE, default=0, help_text="frames blended at each join of segments"
    )


class AssemblySerializer(serializers.ModelSerializer):
    class Meta:
        model = Assembly
        fields = [
            "id",
            "project",
            "episode",
            "scene",
            "created_by",
            "status",
            "progress",
            "container",
            "crossfade_frames",
            "stream_copy",
            "asset",
            "chapters",
            "error_message",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class FilmEpisodeViewSet(EpisodeViewSet):
    serializer_class = EpisodeFilmSerializer
    throttle_scope = "generation"

    def get_throttles(self) -> list[BaseThrottle]:
        if self.action == "assemble":  # queues a worker's minutes of encoding
            return [ScopedRateThrottle()]
        return super().get_throttles()

    def get_queryset(self) -> QuerySet[Episode]:
        newest = films().filter(episode=OuterRef("pk")).values("asset_id")[:1]
        return super().get_queryset().annotate(film_asset=Subquery(newest))

    @extend_schema(request=AssembleSerializer, responses={202: AssemblySerializer})
    @action(detail=True, methods=["post"])
    def assemble(self, request: Request, pk: str | None = None) -> Response:
        """Assemble the episode's film on a worker: its scenes in order, a chapter each, its soundtrack."""
        episode = self.get_object()  # a write: 404 unseen, 403 for a viewer
        data = AssembleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assembly = assembly_start(episode=episode, user=signed_in(request.user), **data.validated_data)
        assembly.refresh_from_db()  # failed already when the task queue could not be reached
        return Response(AssemblySerializer(assembly).data, status=status.HTTP_202_ACCEPTED)


class AssemblyFilter(FilterSet):
    episode = IntFilter(field_name="episode_id")
    status = filters.ChoiceFilter(choices=AssemblyStatus.choices)

    class Meta:
        model = Assembly
        fields = ["episode", "status"]


class AssemblyViewSet(viewsets.ReadOnlyModelViewSet):
    """Assemblies of the projects you can see, newest first: follow one's progress to its film."""

    serializer_class = AssemblySerializer
    filterset_class = AssemblyFilter
    ordering_fields = ["created_at"]

    def get_queryset(self) -> QuerySet[Assembly]:
        return Assembly.objects.filter(project__in=project_ids_visible_to(self.request.user)).order_by(
            "-created_at", "-pk"
        )

    def get_object(self) -> Assembly:
        try:
            return self.get_queryset().get(pk=parse_id(self.kwargs["pk"]))
        except Assembly.DoesNotExist:
            raise Http404("No such assembly") from None
