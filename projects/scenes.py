"""An episode's storyboard as a producer edits it: add, edit, move and remove scenes.

Scene numbers are an episode's running order, 1..N with no gaps, and unique per episode
(``scene_unique_number``, checked row by row): every reorder renumbers in one transaction, first
shifting all numbers above the current maximum, then writing the final ones, so no intermediate
row ever collides. The episode row is locked first so two reorders of one episode queue up.

Characters are set through the scene's reverse relation (``Character.scenes``); projects does not
import characters, so callers pass rows they already limited to the scene's project.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, F, IntegerField, Max, Value, When

from projects.models import Episode, Scene
from projects.services import ProjectError, scene_create, scene_update

# The fields a person edits on the storyboard (number is the running order: scene_move changes it).
EDITABLE_FIELDS = frozenset({"title", "description", "mood", "camera", "lighting", "duration_seconds"})


def _check_characters(episode: Episode, characters: Sequence[Any]) -> None:
    if any(getattr(c, "project_id", None) != episode.project_id for c in characters):
        raise ValidationError({"characters": "Every character must belong to the scene's project."})


def _lock_episode(episode: Episode) -> list[Scene]:
    """Lock the episode (concurrent reorders wait) and return its scenes in running order."""
    Episode.objects.select_for_update().filter(pk=episode.pk).values_list("pk", flat=True).first()
    return list(Scene.objects.filter(episode=episode).order_by("number", "pk"))


def _renumber(episode: Episode, order: Sequence[int]) -> None:
    """Give the scenes ``order`` (ids) the numbers 1..N, in two updates that never collide."""
    if not order:
        return
    top = Scene.objects.filter(episode=episode).aggregate(top=Max("number"))["top"] or 0
    scenes = Scene.objects.filter(episode=episode)
    scenes.update(number=F("number") + top + len(order) + 1)
    whens = [When(pk=pk, then=Value(index)) for index, pk in enumerate(order, start=1)]
    scenes.filter(pk__in=order).update(number=Case(*whens, output_field=IntegerField()))


@transaction.atomic
def scene_add(
    *,
    episode: Episode,
    title: str,
    duration_seconds: float,
    characters: Iterable[Any] = (),
    position: int | None = None,
    **fields: Any,
) -> Scene:
    """A new scene at the end of the episode, or at ``position`` (1-based; the later scenes move down)."""
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise ProjectError(f"unknown scene fields: {', '.join(sorted(unknown))}")
    cast = list(characters)
    _check_characters(episode, cast)
    existing = _lock_episode(episode)
    scene = scene_create(
        episode=episode,
        number=(existing[-1].number if existing else 0) + 1,
        title=title,
        duration_seconds=duration_seconds,
        **fields,
    )
    if cast:
        scene.characters.set(cast)
    if position is not None:
        order = [s.pk for s in existing]
        order.insert(min(max(position, 1), len(order) + 1) - 1, scene.pk)
        _renumber(episode, order)
        scene.refresh_from_db(fields=["number"])
    return scene


@transaction.atomic
def scene_edit(*, scene: Scene, characters: Iterable[Any] | None = None, **fields: Any) -> Scene:
    """Change a scene's storyboard fields (and its characters when given)."""
    unknown = set(fields) - EDITABLE_FIELDS
    if unknown:
        raise ProjectError(f"unknown scene fields: {', '.join(sorted(unknown))}")
    cast = list(characters) if characters is not None else None
    if cast is not None:
        _check_characters(scene.episode, cast)
    if fields:
        scene = scene_update(scene=scene, **fields)
    if cast is not None:
        scene.characters.set(cast)
    return scene


@transaction.atomic
def scene_move(*, scene: Scene, position: int) -> Scene:
    """Move the scene to ``position`` (1-based, clamped to the episode's length); the others close up."""
    scenes = _lock_episode(scene.episode)
    order = [s.pk for s in scenes if s.pk != scene.pk]
    if len(order) == len(scenes):
        raise ProjectError("this scene is no longer in its episode")
    order.insert(min(max(position, 1), len(order) + 1) - 1, scene.pk)
    _renumber(scene.episode, order)
    scene.refresh_from_db(fields=["number"])
    return scene


@transaction.atomic
def scenes_reorder(*, episode: Episode, order: Sequence[int]) -> None:
    """Put the episode's scenes in the running order ``order`` (every scene id of the episode, once)."""
    scenes = _lock_episode(episode)
    if sorted(order) != sorted(s.pk for s in scenes) or len(set(order)) != len(order):
        raise ProjectError("the new order must name every scene of the episode exactly once")
    _renumber(episode, list(order))


@transaction.atomic
def scene_remove(*, scene: Scene) -> None:
    """Delete the scene (its segments and memory log with it); the later scenes move up."""
    episode, pk = scene.episode, scene.pk
    scenes = _lock_episode(episode)
    scene.delete()
    _renumber(episode, [s.pk for s in scenes if s.pk != pk])
