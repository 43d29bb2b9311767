"""A scene's cast and memory as the API writes them (the scene's own fields stay projects' services).

Characters are checked against the scene's project here (quality may import characters; projects may
not); memory goes through ``projects.memory`` (validation, the change log, the carried memory).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from characters.models import Character
from projects import services
from projects.models import Episode, Scene
from quality.services.common import QualityError


class SceneCastError(QualityError):
    """A scene's characters cannot be set as asked."""


def cast_from_ids(*, episode: Episode, ids: Iterable[int]) -> list[Character]:
    """The characters of ``ids``, in the order given; every one must be in the episode's project."""
    wanted = list(dict.fromkeys(int(i) for i in ids))
    found = {c.pk: c for c in Character.objects.filter(project_id=episode.project_id, pk__in=wanted)}
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        raise SceneCastError(f"no character {', '.join(map(str, missing))} in this scene's project")
    return [found[pk] for pk in wanted]


def _set_cast(scene: Scene, cast: list[Character]) -> None:
    # In the order given: the first is the one whose reference starts the scene.
    scene.characters.clear()
    for character in cast:
        scene.characters.add(character)


def _set_memory(scene: Scene, user: User | None, memory: Any) -> None:
    from projects.memory import memory_update

    memory_update(scene=scene, user=user, patch=memory)


@transaction.atomic
def scene_create_cast(
    *,
    episode: Episode,
    user: User | None,
    characters: Iterable[int] | None = None,
    memory: Any = None,
    **fields: Any,
) -> Scene:
    """A new scene (``projects.services.scene_create``) with its characters and its own memory."""
    cast = cast_from_ids(episode=episode, ids=characters or [])
    scene = services.scene_create(episode=episode, **fields)
    if cast:
        _set_cast(scene, cast)
    if memory is not None:
        _set_memory(scene, user, memory)
    return scene


@transaction.atomic
def scene_update_cast(
    *,
    scene: Scene,
    user: User | None,
    characters: Iterable[int] | None = None,
    memory: Any = None,
    **fields: Any,
) -> Scene:
    """Change a scene's fields, and its characters or memory when given."""
    cast = cast_from_ids(episode=scene.episode, ids=characters) if characters is not None else None
    if fields:
        scene = services.scene_update(scene=scene, **fields)
    if cast is not None:
        _set_cast(scene, cast)
    if memory is not None:
        _set_memory(scene, user, memory)
    return scene
