"""Reads for characters; access always through the project's visibility rule."""

from __future__ import annotations

from typing import TypeVar

from django.core.cache import cache
from django.db.models import QuerySet
from django.http import Http404

from characters.models import Character, CharacterAttribute, CharacterVersion, ReferenceImage, Variation
from characters.palette import extract_palette
from projects.selectors import AnyUser, project_ids_visible_to, project_user_can_write


def similarity_threshold(character: Character) -> float:
    """The face similarity a character's outputs must reach: its own, else its project's (one place)."""
    if character.consistency_threshold is not None:
        return character.consistency_threshold
    return character.project.threshold_similarity


def primary_reference(character: Character, version: CharacterVersion | None = None) -> ReferenceImage | None:
    """The reference a character's job is conditioned on: the version's primary (else its first)
    when the version has references of its own, else the character's primary (else its first)."""
    if version is not None:
        ref = ReferenceImage.objects.filter(version=version).order_by("-is_primary", "created_at", "pk").first()
        if ref is not None:
            return ref
    return (
        ReferenceImage.objects.filter(character=character, version__isnull=True)
        .order_by("-is_primary", "created_at", "pk")
        .first()
    )


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
    return (
        CharacterVersion.objects.filter(character__project__in=project_ids_visible_to(user))
        .select_related("character")
        .prefetch_related("references")
    )


def attributes_of(character: Character) -> QuerySet[CharacterAttribute]:
    return CharacterAttribute.objects.filter(character=character).order_by("-priority", "type")


def variations_visible_to(user: AnyUser) -> QuerySet[Variation]:
    return Variation.objects.filter(character__project__in=project_ids_visible_to(user)).select_related("character")


_Row = TypeVar("_Row", ReferenceImage, CharacterVersion, Variation)


def characters_with_summary_visible_to(user: AnyUser) -> QuerySet[Character]:
    """Visible characters annotated with ``reference_count`` and ``primary_reference_name``."""
    from django.db.models import Count, OuterRef, Subquery

    primary = ReferenceImage.objects.filter(character=OuterRef("pk"), version__isnull=True, is_primary=True)
    # An aggregate drops Meta.ordering, so the model's order is restated (pagination needs one).
    return (
        characters_visible_to(user)
        .annotate(
            reference_count=Count("references", distinct=True),
            primary_reference_name=Subquery(primary.values("image")[:1]),
        )
        .prefetch_related("attribute_set")
        .order_by("project__name", "name", "pk")
    )


def _get_for_user(queryset: QuerySet[_Row], *, user: AnyUser, pk: int | str, write: bool, label: str) -> _Row:
    try:
        row = queryset.select_related("character__project").get(pk=pk)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise Http404(f"No such {label}") from None
    if write and not project_user_can_write(project=row.character.project, user=user):
        from django.core.exceptions import PermissionDenied

        raise PermissionDenied("You have read-only access to this project")
    return row


def reference_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> ReferenceImage:
    queryset = references_visible_to(user)
    return _get_for_user(queryset, user=user, pk=pk, write=write, label="reference")


def version_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> CharacterVersion:
    queryset = versions_visible_to(user)
    return _get_for_user(queryset, user=user, pk=pk, write=write, label="version")


def variation_get_for_user(*, user: AnyUser, pk: int | str, write: bool = False) -> Variation:
    queryset = variations_visible_to(user)
    return _get_for_user(queryset, user=user, pk=pk, write=write, label="variation")


def palette_suggestion(*, character: Character) -> list[str]:
    """The primary reference's colours when they differ from the character's palette, else [].

    Extracted from the stored file (the backdrop left out) and cached by the file's hash, so the
    character page does not decode the reference on every view.
    """
    reference = character.references.filter(is_primary=True, version__isnull=True).only("image", "sha256").first()
    if reference is None:
        return []
    key = f"characters:palette:{reference.sha256}"
    colours = cache.get(key)
    if colours is None:
        try:
            with reference.image.open("rb") as handle:
                colours = extract_palette(handle.read())
        except OSError:
            return []
        cache.set(key, colours, 24 * 3600)
    return [] if colours == list(character.palette or []) else colours
