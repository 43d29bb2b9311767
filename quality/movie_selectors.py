"""Reads of the movie pages: an episode's storyboard cards, a scene's timeline, the episode's film.

A scene shows the segments of its newest run (an earlier run's segments are history). Each read
is a fixed number of queries, however many scenes or segments there are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.urls import reverse

from generation.models import Assembly, AssemblyStatus
from projects.models import Episode, Scene
from quality.models import JoinEvaluation, JoinKind, SceneRun, Segment, SegmentStatus


@dataclass
class SceneCard:
    scene: Scene
    run: SceneRun | None = None
    segments: list[Segment] = field(default_factory=list)
    scene_join: JoinEvaluation | None = None

    @property
    def thumbnail_url(self) -> str | None:
        """The first complete segment's output thumbnail, else its cut-out last frame."""
        for segment in self.segments:
            if segment.status == SegmentStatus.COMPLETE and segment.output_id is not None:
                return reverse("asset-thumb", args=[segment.output_id])
            if segment.status == SegmentStatus.COMPLETE and segment.last_frame is not None:
                return segment.last_frame.file.url
        return None

    @property
    def joins(self) -> list[Segment]:
        """The segment → segment joins (into segments 2..N) in order."""
        return [s for s in self.segments if s.number > 1]

    @property
    def joins_passed(self) -> int:
        return sum(1 for s in self.joins if s.join_passed is True)

    @property
    def joins_failed(self) -> int:
        return sum(1 for s in self.joins if s.join_passed is False)


def _newest_runs(scene_ids: list[int]) -> dict[int, SceneRun]:
    runs: dict[int, SceneRun] = {}
    for run in (
        SceneRun.objects.filter(scene_id__in=scene_ids).select_related("template").order_by("-created_at", "-pk")
    ):
        runs.setdefault(run.scene_id, run)
    return runs


def _segments_of(runs: dict[int, SceneRun]) -> dict[int, list[Segment]]:
    by_run: dict[int, list[Segment]] = {run.pk: [] for run in runs.values()}
    rows = (
        Segment.objects.filter(run_id__in=list(by_run))
        .select_related("output", "first_frame", "last_frame", "job")
        .order_by("number", "pk")
    )
    for segment in rows:
        by_run[segment.run_id].append(segment)
    return {scene_id: by_run[run.pk] for scene_id, run in runs.items()}


def storyboard(episode: Episode) -> list[SceneCard]:
    """The episode's scenes in running order, each with its newest run's segments and scene join."""
    scenes = list(Scene.objects.filter(episode=episode).prefetch_related("characters").order_by("number", "pk"))
    ids = [s.pk for s in scenes]
    runs = _newest_runs(ids)
    segments = _segments_of(runs)
    scene_joins: dict[int, JoinEvaluation] = {}
    for join in JoinEvaluation.objects.filter(scene_id__in=ids, kind=JoinKind.SCENE).order_by("-created_at", "-pk"):
        scene_joins.setdefault(join.scene_id, join)
    return [
        SceneCard(scene=s, run=runs.get(s.pk), segments=segments.get(s.pk, []), scene_join=scene_joins.get(s.pk))
        for s in scenes
    ]


def scene_timeline(scene: Scene) -> SceneCard:
    """The scene with its newest run's segments (frames, output, current job) in order."""
    runs = _newest_runs([scene.pk])
    card = SceneCard(scene=scene, run=runs.get(scene.pk), segments=_segments_of(runs).get(scene.pk, []))
    card.scene_join = JoinEvaluation.objects.filter(scene=scene, kind=JoinKind.SCENE).order_by("-created_at").first()
    return card


@dataclass
class Film:
    """The episode's newest assembled film, and an assembly still under way (if any)."""

    film: Assembly | None
    pending: Assembly | None

    @property
    def chapters(self) -> list[dict[str, Any]]:
        return list(self.film.chapters or []) if self.film is not None else []


def episode_film(episode: Episode) -> Film:
    assemblies = Assembly.objects.filter(episode=episode, scene__isnull=True).select_related("asset")
    film = (
        assemblies.filter(status=AssemblyStatus.SUCCEEDED, asset__isnull=False).order_by("-finished_at", "-pk").first()
    )
    pending = (
        assemblies.filter(status__in=[AssemblyStatus.QUEUED, AssemblyStatus.RUNNING]).order_by("-created_at").first()
    )
    if pending is None:
        failed = assemblies.order_by("-created_at", "-pk").first()
        # The newest attempt failed: said on the page, beside the film that is still there.
        if failed is not None and failed.status == AssemblyStatus.FAILED:
            pending = failed
    return Film(film=film, pending=pending)
