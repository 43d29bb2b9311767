"""Writes for characters, their references, versions and variations."""

from __future__ import annotations

from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import QuerySet

from characters.models import (
    AttributeType,
    Character,
    CharacterAttribute,
    CharacterVersion,
    ReferenceImage,
    Variation,
    VariationKind,
)
from characters.palette import extract_palette
from characters.selectors import palette_suggestion
from projects.models import Project
from projects.services import unique_slug
from tower.core.errors import DomainError
from tower.core.files import delete_files_after_commit, stored_name
from tower.core.thumbnails import thumb_name
from tower.core.uploads import UploadError, check_image

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
        "palette_gated",
        "palette_threshold",
        "bible",
    }
)
ATTRIBUTE_FIELDS = frozenset({"type", "value", "prompt_tokens", "priority"})


class CharacterError(DomainError):
    """A character operation cannot be done as asked."""


def _check_fields(fields: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise CharacterError(f"unknown fields: {', '.join(sorted(unknown))}")
    for key in ("consistency_threshold", "palette_threshold"):
        # Empty is a choice here: follow the project's threshold (characters.selectors).
        if key in fields and fields[key] == "":
            fields[key] = None
    for key in ("bible", "learned_negatives"):
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
    """Create a character; ``attributes`` (a list of rows, or the old ``{"hair": "silver"}`` form)
    become its :class:`CharacterAttribute` rows."""
    _check_fields(fields, CHARACTER_FIELDS)
    attributes = fields.pop("attributes", None)
    slug = fields.pop("slug", None) or unique_slug(Character, name, scope={"project": project})
    character = Character(project=project, name=name, slug=slug, design_prompt=design_prompt, **fields)
    character.full_clean()
    character.save()
    if attributes is not None:
        character_set_attributes(character=character, attributes=attributes)
    return character


@transaction.atomic
def character_update(*, character: Character, **fields: Any) -> Character:
    """Change a character; ``attributes`` replaces its whole attribute list (see
    :func:`character_set_attributes`); ``consistency_threshold=None`` follows the project's again."""
    _check_fields(fields, CHARACTER_FIELDS)
    attributes = fields.pop("attributes", None)
    for key, value in fields.items():
        setattr(character, key, value)
    character.full_clean()
    character.save(update_fields=[*fields, "updated_at"])
    if attributes is not None:
        character_set_attributes(character=character, attributes=attributes)
    return character


# --- Attributes ---------------------------------------------------------------------------


def attributes_from_dict(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The old ``{"hair": "silver"}`` form as attribute rows: a known key is the type, any other
    becomes the ``other`` attribute with ``key: value`` as its tokens (as the data migration did)."""
    rows: list[dict[str, Any]] = []
    for key, raw in data.items():
        kind = str(key).strip().lower()
        value = ", ".join(map(str, raw)) if isinstance(raw, list) else str(raw if raw is not None else "")
        value = value.strip()
        if not value:
            continue
        if kind in AttributeType.values and kind != AttributeType.OTHER:
            rows.append({"type": kind, "value": value})
        else:
            rows.append({"type": AttributeType.OTHER, "value": value, "prompt_tokens": f"{key}: {value}"})
    return rows


def _attribute_rows(attributes: Any) -> list[dict[str, Any]]:
    rows = attributes_from_dict(attributes) if isinstance(attributes, dict) else attributes
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValidationError({"attributes": "must be a list of {type, value, prompt_tokens, priority}"})
    types = [row.get("type") for row in rows]
    repeated = sorted({str(t) for t in types if types.count(t) > 1})
    if repeated:
        raise ValidationError({"attributes": f"one attribute per type: {', '.join(repeated)} given more than once"})
    return rows


def _attribute_fill(attribute: CharacterAttribute, fields: dict[str, Any]) -> CharacterAttribute:
    _check_fields(fields, ATTRIBUTE_FIELDS)
    # The 0..100 range is a check constraint: said as a field error, before the row is touched.
    priority = fields.get("priority")
    if isinstance(priority, int) and not 0 <= priority <= 100:
        raise ValidationError({"priority": "must be between 0 and 100"})
    for key, value in fields.items():
        setattr(attribute, key, value.strip() if isinstance(value, str) else value)
    attribute.full_clean()
    attribute.save()
    return attribute


@transaction.atomic
def attribute_create(*, character: Character, type: str, value: str, **fields: Any) -> CharacterAttribute:
    return _attribute_fill(CharacterAttribute(character=character), {"type": type, "value": value, **fields})


@transaction.atomic
def attribute_update(*, attribute: CharacterAttribute, **fields: Any) -> CharacterAttribute:
    return _attribute_fill(attribute, fields)


@transaction.atomic
def attribute_delete(*, attribute: CharacterAttribute) -> None:
    attribute.delete()


@transaction.atomic
def character_set_attributes(*, character: Character, attributes: Any) -> list[CharacterAttribute]:
    """Make the character's attributes exactly ``attributes``: a row with an ``id`` (or else of a
    type the character has) is updated, a new one created, and the ones not given are deleted."""
    rows = _attribute_rows(attributes)
    Character.objects.select_for_update().filter(pk=character.pk).first()
    existing = {a.pk: a for a in CharacterAttribute.objects.filter(character=character)}
    claimed = {row.get("id") for row in rows}
    # A row without an id takes the attribute of its type, unless another row names that one.
    by_type = {a.type: a for a in existing.values() if a.pk not in claimed}
    plan: list[tuple[CharacterAttribute, dict[str, Any]]] = []
    for row in rows:
        # A row says the whole attribute: what it leaves out goes back to the default.
        fields = {"prompt_tokens": "", "priority": 50, **{k: v for k, v in row.items() if k != "id"}}
        if row.get("id") is not None:
            attribute = existing.get(row["id"])
            if attribute is None:
                raise ValidationError({"attributes": f"attribute {row['id']} is not one of {character}'s"})
        else:
            attribute = by_type.get(fields.get("type", "")) or CharacterAttribute(character=character)
        plan.append((attribute, fields))
    kept = {attribute.pk for attribute, _ in plan if attribute.pk}
    # Deleted first, so a type freed by one row can be taken by another in the same change.
    CharacterAttribute.objects.filter(character=character).exclude(pk__in=kept).delete()
    # Changed rows before new ones, so a type a changed row gives up is free for a new row.
    plan.sort(key=lambda step: step[0].pk is None)
    saved = []
    for attribute, fields in plan:
        try:
            saved.append(_attribute_fill(attribute, fields))
        except ValidationError as exc:
            # Said under "attributes", naming the row, wherever the list came from (API, page).
            detail = "; ".join(
                f"{k}: {' '.join(v)}" for k, v in getattr(exc, "message_dict", {"": exc.messages}).items()
            )
            raise ValidationError({"attributes": f"{fields.get('type') or 'a row'}: {detail}"}) from exc
    return saved


def _reference_scope(*, character_id: int, version_id: int | None) -> QuerySet[ReferenceImage]:
    """The references that share one primary: the character's own, or one version's."""
    if version_id is None:
        return ReferenceImage.objects.filter(character_id=character_id, version__isnull=True)
    return ReferenceImage.objects.filter(version_id=version_id)


def character_add_reference(
    *,
    character: Character,
    upload: IO[bytes],
    original_name: str = "",
    primary: bool | None = None,
    note: str = "",
    version: CharacterVersion | None = None,
) -> ReferenceImage:
    """Validate an uploaded image by content and attach it as a reference of the character, or of
    one of its versions (``version``).

    The first reference of the character (or of the version) becomes its primary. If anything
    fails after the file is written, the file is removed again, so no orphan stays behind.
    """
    if version is not None and version.character_id != character.pk:
        raise ValidationError({"version": f"version '{version.name}' is not one of {character}'s"})
    try:
        checked = check_image(upload, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
    except UploadError as exc:
        raise ValidationError({"image": str(exc)}) from None
    reference = ReferenceImage(
        character=character,
        version=version,
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
            scope = _reference_scope(character_id=locked.pk, version_id=version.pk if version else None)
            has_primary = scope.filter(is_primary=True).exists()
            make_primary = (not has_primary) if primary is None else primary
            if make_primary and has_primary:
                scope.filter(is_primary=True).update(is_primary=False)
            reference.is_primary = make_primary
            reference.image.save(checked.storage_name(), ContentFile(checked.data), save=False)
            stored_name = reference.image.name
            # Dimensions come from the validated probe, not from re-reading the stored file.
            reference.width, reference.height = checked.width, checked.height
            reference.save()
            # A palette someone entered (or one already filled) is never replaced by an upload:
            # the page offers the new reference's colours as a suggestion instead.
            if not locked.palette and version is None:
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
    """Make ``reference`` the primary one of its character (or of its version, for a version's)."""
    Character.objects.select_for_update().get(pk=reference.character_id)
    scope = _reference_scope(character_id=reference.character_id, version_id=reference.version_id)
    scope.filter(is_primary=True).exclude(pk=reference.pk).update(is_primary=False)
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
    scope = _reference_scope(character_id=character_id, version_id=reference.version_id)
    storage, name = reference.image.storage, stored_name(reference.image)
    reference.delete()
    if was_primary:
        successor = scope.order_by("created_at", "pk").first()
        if successor:
            successor.is_primary = True
            successor.save(update_fields=["is_primary"])
    # The admin's thumbnail (tower.core.thumbnails) goes with the image.
    delete_files_after_commit([(storage, name), (storage, thumb_name(name))])


VERSION_FIELDS = frozenset(
    {"name", "slug", "prompt_delta", "negative_delta", "description", "order", "age_state", "emotional_state"}
)
VARIATION_FIELDS = frozenset({"kind", "name", "slug", "prompt_delta", "negative_delta", "replaces"})


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
    if "replaces" not in fields and kind == VariationKind.OUTFIT:
        fields["replaces"] = AttributeType.OUTFIT  # an outfit is worn instead of the design's
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
        for name in (stored_name(ref.image), thumb_name(stored_name(ref.image)))
    ]
    character.delete()
    delete_files_after_commit(files)


@transaction.atomic
def reference_update(
    *, reference: ReferenceImage, is_primary: bool | None = None, note: str | None = None
) -> ReferenceImage:
    """Change a reference's note, or make it the primary one.

    A primary reference is not unset directly: another one is made primary instead.
    """
    if is_primary is False and reference.is_primary:
        owner = "a version" if reference.version_id else "a character"
        message = f"{owner} keeps one primary reference; make another one primary instead"
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
    """Delete the version with its own references; their files after commit."""
    files = [
        (ref.image.storage, name)
        for ref in ReferenceImage.objects.filter(version=version).only("image")
        for name in (stored_name(ref.image), thumb_name(stored_name(ref.image)))
    ]
    version.delete()
    delete_files_after_commit(files)


@transaction.atomic
def version_set_primary(*, version: CharacterVersion, reference: ReferenceImage) -> ReferenceImage:
    """Make ``reference`` (one of the version's own) the primary reference its jobs are conditioned on."""
    if reference.version_id != version.pk:
        raise ValidationError({"reference": f"reference #{reference.pk} is not one of version '{version.name}'s"})
    return reference_set_primary(reference=reference)


@transaction.atomic
def variation_delete(*, variation: Variation) -> None:
    variation.delete()
