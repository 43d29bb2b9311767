"""Reads for characters; access always through the project's visibility rule."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from characters.models import Character, CharacterVersion, ReferenceImage, Variation
from projects.selectors import AnyUser, project_ids_visible_to, project_user_can_write


def characters_visible_to(user: AnyUser) -> QuerySet[Character]:
    return Character.objects.filter(project__in=project_ids_visible_to(user)).select_related("project")


def character_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> Character:
    try:
        character = characters_visible_to(user).get(pk=pk)
    except (Character.DoesNotExist, ValueError, TypeError):
        raise Http404("No such character") from None
    if write and not project_user_can_write(project=character.project, user=user):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("You have read-only access to this project")
    return character


def references_visible_to(user: AnyUser) -> QuerySet[ReferenceImage]:
    return ReferenceImage.objects.filter(character__project__in=project_ids_visible_to(user)).select_related(
        "character"
    )


def versions_visible_to(user: AnyUser) -> QuerySet[CharacterVersion]:
    return CharacterVersion.objects.filter(character__project__in=project_ids_visible_to(user)).select_related(
        "character"
    )


def variations_visible_to(user: AnyUser) -> QuerySet[Variation]:
    return Variation.objects.filter(character__project__in=project_ids_visible_to(user)).select_related(
        "character"
    )
