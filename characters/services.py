"""Writes for characters, their references, versions and variations."""

from __future__ import annotations

from typing import Any, BinaryIO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction

from characters.models import Character, CharacterVersion, ReferenceImage, Variation
from characters.palette import extract_palette
from characters.selectors import palette_suggestion
from projects.models import Project
from projects.services import unique_slug
from tower.thumbnails import thumb_name
from tower.uploads import UploadError, check_image

CHARACTER_FIELDS = frozenset(
    {
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
    }
)


class CharacterError(Exception):
    """A character operation cannot be done as asked."""


def _check_fields(fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise CharacterError(f"unknown fields: {', '.join(sorted(unknown))}")
    for key in ("attributes", "bible", "learned_negatives"):
        if key in fields and not isinstance(fields[key], dict):
            raise ValidationError({key: "must be an object"})
    if "palette" in fields:
        palette = fields["palette"]
        if not isinstance(palette, list) or not all(
            isinstance(c, str) and len(c) == 7 and c.startswith("#") for c in palette
        ):
            raise ValidationError({"palette": "must be a list of #rrggbb colours"})


@transaction.atomic
def character_create(*, project: Project, name: str, design_prompt: str, **fields: Any) -> Character:
    _check_fields(fields, CHARACTER_FIELDS)
    slug = fields.pop("slug", None) or unique_slug(Character, name, scope={"project": project})
    character = Character(project=project, name=name, slug=slug, design_prompt=design_prompt, **fields)
    character.full_clean()
    character.save()
    return character


@transaction.atomic
def character_update(*, character: Character, **fields: Any) -> Character:
    _check_fields(fields, CHARACTER_FIELDS)
    for key, value in fields.items():
        setattr(character, key, value)
    character.full_clean()
    character.save(update_fields=[*fields, "updated_at"])
    return character


def character_add_reference(
    *, character: Character, upload: BinaryIO, original_name: str = "", primary: bool | None = None, note: str = ""
) -> ReferenceImage:
    """Validate an uploaded image by content and attach it as a reference.

    The first reference becomes primary. If anything fails after the file is written, the file is
    removed again, so no orphan stays behind.
    """
    try:
        checked = check_image(upload, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except UploadError as exc:
        raise ValidationError({"image": str(exc)}) from None
    reference = ReferenceImage(
        character=character,
        sha256=checked.sha256,
        original_name=(original_name or "")[:255],
        note=note,
    )
    stored_name = None
    try:
        with transaction.atomic():
            locked = Character.objects.select_for_update().get(pk=character.pk)
            if ReferenceImage.objects.filter(character=locked, sha256=checked.sha256).exists():
                raise ValidationError({"image": "this image is already a reference of the character"})
            has_primary = ReferenceImage.objects.filter(character=locked, is_primary=True).exists()
            make_primary = (not has_primary) if primary is None else primary
            if make_primary and has_primary:
                ReferenceImage.objects.filter(character=locked, is_primary=True).update(is_primary=False)
            reference.is_primary = make_primary
            reference.image.save(checked.storage_name(), ContentFile(checked.data), save=False)
            stored_name = reference.image.name
            # Dimensions come from the validated probe, not from re-reading the stored file.
            reference.width, reference.height = checked.width, checked.height
            reference.save()
            # A palette someone entered (or one already filled) is never replaced by an upload:
            # the page offers the new reference's colours as a suggestion instead.
            if not locked.palette:
                locked.palette = extract_palette(checked.data)
                locked.save(update_fields=["palette", "updated_at"])
                character.palette = locked.palette
    except BaseException:
        # The row rolled back; the file must not outlive it.
        if stored_name:
            reference.image.storage.delete(stored_name)
        raise
    return reference


def character_use_palette_suggestion(*, character: Character) -> Character:
    """Replace the palette with the colours of the primary reference (the page's "Use these colours")."""
    suggestion = palette_suggestion(character=character)
    if not suggestion:
        raise CharacterError("there is no suggested palette: upload a primary reference first")
    return character_update(character=character, palette=suggestion)


@transaction.atomic
def reference_set_primary(*, reference: ReferenceImage) -> ReferenceImage:
    Character.objects.select_for_update().get(pk=reference.character_id)
    ReferenceImage.objects.filter(character_id=reference.character_id, is_primary=True).exclude(pk=reference.pk).update(
        is_primary=False
    )
    reference.is_primary = True
    reference.save(update_fields=["is_primary"])
    return reference


@transaction.atomic
def reference_delete(*, reference: ReferenceImage) -> None:
    """Delete the row now and the file after commit; promote another reference if it was primary."""
    character_id = reference.character_id
    Character.objects.select_for_update().get(pk=character_id)
    # The caller's instance may be stale (another reference was made primary meanwhile).
    was_primary = ReferenceImage.objects.filter(pk=reference.pk, is_primary=True).exists()
    storage, name = reference.image.storage, reference.image.name
    reference.delete()
    if was_primary:
        successor = ReferenceImage.objects.filter(character_id=character_id).order_by("created_at").first()
        if successor:
            successor.is_primary = True
            successor.save(update_fields=["is_primary"])
    # The admin's thumbnail (tower.thumbnails) goes with the image.
    transaction.on_commit(lambda: [storage.delete(n) for n in (name, thumb_name(name))])


VERSION_FIELDS = frozenset({"name", "slug", "prompt_delta", "negative_delta", "description", "order"})
VARIATION_FIELDS = frozenset({"kind", "name", "slug", "prompt_delta", "negative_delta"})


@transaction.atomic
def version_create(*, character: Character, name: str, **fields: Any) -> CharacterVersion:
    _check_fields(fields, VERSION_FIELDS)
    slug = fields.pop("slug", None) or unique_slug(CharacterVersion, name, scope={"character": character})
    version = CharacterVersion(character=character, name=name, slug=slug, **fields)
    version.full_clean()
    version.save()
    return version


@transaction.atomic
def version_update(*, version: CharacterVersion, **fields: Any) -> CharacterVersion:
    _check_fields(fields, VERSION_FIELDS)
    for key, value in fields.items():
        setattr(version, key, value)
    version.full_clean()
    version.save(update_fields=list(fields))
    return version


@transaction.atomic
def variation_create(*, character: Character, kind: str, name: str, **fields: Any) -> Variation:
    _check_fields(fields, VARIATION_FIELDS)
    slug = fields.pop("slug", None) or unique_slug(Variation, name, scope={"character": character, "kind": kind})
    variation = Variation(character=character, kind=kind, name=name, slug=slug, **fields)
    variation.full_clean()
    variation.save()
    return variation


@transaction.atomic
def variation_update(*, variation: Variation, **fields: Any) -> Variation:
    _check_fields(fields, VARIATION_FIELDS)
    for key, value in fields.items():
        setattr(variation, key, value)
    variation.full_clean()
    variation.save(update_fields=list(fields))
    return variation


@transaction.atomic
def character_delete(*, character: Character) -> None:
    """Delete the character with its references, versions and variations; files after commit."""
    files = [
        (ref.image.storage, name)
        for ref in ReferenceImage.objects.filter(character=character).only("image")
        for name in (ref.image.name, thumb_name(ref.image.name))
    ]
    character.delete()
    transaction.on_commit(lambda: [storage.delete(name) for storage, name in files])


@transaction.atomic
def reference_update(
    *, reference: ReferenceImage, is_primary: bool | None = None, note: str | None = None
) -> ReferenceImage:
    """Change a reference's note, or make it the primary one.

    A primary reference is not unset directly: another one is made primary instead.
    """
    if is_primary is False and reference.is_primary:
        message = "a character keeps one primary reference; make another one primary instead"
        raise ValidationError({"is_primary": message})
    if note is not None:
        reference.note = note
        reference.full_clean(exclude=["image"])
        reference.save(update_fields=["note"])
    if is_primary:
        reference = reference_set_primary(reference=reference)
    return reference


@transaction.atomic
def version_delete(*, version: CharacterVersion) -> None:
    version.delete()


@transaction.atomic
def variation_delete(*, variation: Variation) -> None:
    variation.delete()
