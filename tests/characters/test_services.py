from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from characters.models import Character, ReferenceImage
from characters.services import (
    character_add_reference,
    character_create,
    character_update,
    reference_delete,
    reference_set_primary,
    variation_create,
    version_create,
)
from tests.factories import make_project, png_bytes


def _files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def character(owner):
    project = make_project(owner)
    return character_create(project=project, name="Kai Nakamura", design_prompt="1boy, silver hair")


@pytest.mark.django_db
def test_slugs_are_unique_within_a_project_only(owner):
    a, b = make_project(owner, "A"), make_project(owner, "B")
    first = character_create(project=a, name="Kai", design_prompt="x")
    second = character_create(project=a, name="Kai", design_prompt="x")
    other = character_create(project=b, name="Kai", design_prompt="x")
    assert (first.slug, second.slug, other.slug) == ("kai", "kai-2", "kai")


@pytest.mark.django_db
def test_first_reference_becomes_primary_and_sets_the_palette(character, settings):
    ref = character_add_reference(
        character=character, upload=io.BytesIO(png_bytes(colour=(10, 200, 30))), original_name="kai.png"
    )
    assert ref.is_primary
    assert (ref.width, ref.height) == (64, 64)
    assert Path(ref.image.path).is_file()
    character.refresh_from_db()
    assert character.palette == ["#0ac81e"]


@pytest.mark.django_db
def test_user_file_name_never_becomes_a_path(character, settings):
    ref = character_add_reference(
        character=character, upload=io.BytesIO(png_bytes()), original_name="../../etc/passwd.png"
    )
    stored = Path(ref.image.path).resolve()
    assert stored.is_relative_to(Path(settings.MEDIA_ROOT).resolve() / "references" / str(character.pk))
    assert "passwd" not in stored.name
    assert ref.original_name == "../../etc/passwd.png"  # kept for display only


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"just some text, named .png", "not a readable image"),
        (png_bytes()[:60], "not a readable image"),
        (b"", "empty"),
        (b"GIF89a" + b"\x00" * 40, "not a readable image"),
    ],
)
def test_bad_uploads_are_refused_and_leave_nothing(character, settings, payload, message):
    with pytest.raises(ValidationError, match=message):
        character_add_reference(character=character, upload=io.BytesIO(payload), original_name="x.png")
    assert ReferenceImage.objects.count() == 0
    assert _files(settings) == []


@pytest.mark.django_db
def test_oversized_bytes_and_pixels_are_refused(character, settings):
    settings.UPLOAD_MAX_BYTES = 2000
    big = png_bytes(400, 400, colour=(1, 2, 3))
    noisy = io.BytesIO()
    from PIL import Image

    Image.effect_noise((200, 200), 80).save(noisy, format="PNG")
    with pytest.raises(ValidationError, match="larger than the limit"):
        character_add_reference(character=character, upload=io.BytesIO(noisy.getvalue()))
    settings.UPLOAD_MAX_BYTES = 10_000_000
    settings.UPLOAD_MAX_PIXELS = 100 * 100
    with pytest.raises(ValidationError, match="pixels"):
        character_add_reference(character=character, upload=io.BytesIO(big))
    assert ReferenceImage.objects.count() == 0
    assert _files(settings) == []


@pytest.mark.django_db
def test_decompression_bomb_is_refused_without_decoding(character, settings):
    # A 20000×20000 PNG compresses to a few hundred KB of zeros; the pixel bound stops it.
    settings.UPLOAD_MAX_PIXELS = 40_000_000
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    with pytest.raises(ValidationError, match="pixels"):
        character_add_reference(character=character, upload=io.BytesIO(buffer.getvalue()))
    assert _files(settings) == []


@pytest.mark.django_db
def test_duplicate_reference_is_refused(character, settings):
    data = png_bytes()
    character_add_reference(character=character, upload=io.BytesIO(data))
    with pytest.raises(ValidationError, match="already a reference"):
        character_add_reference(character=character, upload=io.BytesIO(data))
    assert ReferenceImage.objects.count() == 1
    assert len(_files(settings)) == 1


@pytest.mark.django_db
def test_only_one_primary_reference(character):
    a = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(1, 1, 1))))
    b = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(2, 2, 2))))
    assert (a.is_primary, b.is_primary) == (True, False)
    reference_set_primary(reference=b)
    a.refresh_from_db()
    assert not a.is_primary
    with pytest.raises(IntegrityError), transaction.atomic():
        ReferenceImage.objects.filter(pk=a.pk).update(is_primary=True)


@pytest.mark.django_db(transaction=True)
def test_deleting_the_primary_promotes_the_next_and_removes_the_file(owner, settings):
    project = make_project(owner)
    character = character_create(project=project, name="Kai", design_prompt="x")
    a = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(1, 1, 1))))
    b = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(2, 2, 2))))
    path = Path(a.image.path)
    reference_delete(reference=a)
    b.refresh_from_db()
    assert b.is_primary
    assert not path.exists()


@pytest.mark.django_db
def test_threshold_out_of_range_is_a_validation_error(character):
    with pytest.raises(ValidationError):
        character_update(character=character, palette=["red"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Character.objects.filter(pk=character.pk).update(consistency_threshold=1.2)


@pytest.mark.django_db
def test_versions_and_variations_get_scoped_slugs(character):
    v1 = version_create(character=character, name="Teen", prompt_delta="younger")
    v2 = version_create(character=character, name="Teen")
    out = variation_create(character=character, kind="outfit", name="Winter")
    expr = variation_create(character=character, kind="expression", name="Winter")
    assert (v1.slug, v2.slug, out.slug, expr.slug) == ("teen", "teen-2", "winter", "winter")
    with pytest.raises(ValidationError):
        variation_create(character=character, kind="hat", name="Cap")


@pytest.mark.django_db
def test_deleting_a_stale_instance_of_the_primary_still_promotes_another(character):
    a = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(1, 1, 1))))
    b = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(2, 2, 2))))
    stale_b = ReferenceImage.objects.get(pk=b.pk)  # loaded while b was not primary
    reference_set_primary(reference=b)
    reference_delete(reference=stale_b)
    a.refresh_from_db()
    assert a.is_primary
