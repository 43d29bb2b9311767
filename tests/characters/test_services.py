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


# --- Consistency engine ----------------------------------------------------------------------


def _ref(character, colour, **kwargs):
    return character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=colour)), **kwargs)


@pytest.mark.django_db
def test_attributes_are_one_per_type_with_a_priority_from_0_to_100(character):
    from characters.services import attribute_create, attribute_delete, attribute_update

    hair = attribute_create(character=character, type="hair", value=" silver ", priority=80)
    assert (hair.value, hair.prompt_tokens, hair.priority) == ("silver", "", 80)
    with pytest.raises(ValidationError):
        attribute_create(character=character, type="hair", value="black")
    with pytest.raises(ValidationError) as refused:
        attribute_update(attribute=hair, priority=101)
    assert "priority" in refused.value.message_dict
    with pytest.raises(ValidationError):
        attribute_create(character=character, type="wings", value="feathered")
    attribute_update(attribute=hair, prompt_tokens="(silver hair:1.2)")
    hair.refresh_from_db()
    assert (hair.prompt_tokens, hair.priority) == ("(silver hair:1.2)", 80)
    attribute_delete(attribute=hair)
    assert not character.attribute_set.exists()


@pytest.mark.django_db
def test_set_attributes_replaces_the_list_and_a_failure_changes_nothing(character):
    from characters.services import character_set_attributes

    hair, _eyes = character_set_attributes(
        character=character, attributes=[{"type": "hair", "value": "silver"}, {"type": "eyes", "value": "amber"}]
    )
    # A type moves from one row to another in one change: the freed type can be taken.
    character_set_attributes(character=character, attributes=[{"id": hair.pk, "type": "eyes", "value": "grey"}])
    assert list(character.attribute_set.values_list("pk", "type", "value")) == [(hair.pk, "eyes", "grey")]
    # A row named by id keeps its identity even when a new row takes its old type.
    character_set_attributes(
        character=character,
        attributes=[{"type": "eyes", "value": "blue"}, {"id": hair.pk, "type": "face", "value": "round"}],
    )
    rows = sorted(character.attribute_set.values_list("type", "value"))
    assert rows == [("eyes", "blue"), ("face", "round")]
    assert character.attribute_set.get(type="face").pk == hair.pk
    character_set_attributes(character=character, attributes=[{"type": "eyes", "value": "grey"}])
    with pytest.raises(ValidationError) as refused:
        character_set_attributes(
            character=character,
            attributes=[{"type": "outfit", "value": "coat"}, {"type": "hair", "value": "x" * 201}],
        )
    (message,) = refused.value.message_dict["attributes"]
    assert message.startswith("hair: value: ") and "200 characters" in message
    assert list(character.attribute_set.values_list("type", "value")) == [("eyes", "grey")]
    # The old dict form: known keys are types, any other becomes "other" with "key: value" tokens.
    character_set_attributes(character=character, attributes={"Hair": "silver", "height": "tall"})
    assert sorted(character.attribute_set.values_list("type", "value", "prompt_tokens")) == [
        ("hair", "silver", ""),
        ("other", "tall", "height: tall"),
    ]


@pytest.mark.django_db
def test_threshold_empty_follows_the_project_and_a_value_overrides_it(character):
    from characters.selectors import similarity_threshold

    project = character.project
    assert character.consistency_threshold is None
    assert similarity_threshold(character) == project.threshold_similarity == 0.70
    character_update(character=character, consistency_threshold=0.85)
    assert similarity_threshold(Character.objects.get(pk=character.pk)) == 0.85
    character_update(character=character, consistency_threshold="")  # a page's empty field
    project.threshold_similarity = 0.6
    project.save(update_fields=["threshold_similarity"])
    assert similarity_threshold(Character.objects.select_related("project").get(pk=character.pk)) == 0.6
    character_update(character=character, palette_gated=True, palette_threshold=12.0)
    with pytest.raises(ValidationError):
        character_update(character=character, palette_threshold=120)


@pytest.mark.django_db
def test_a_versions_references_have_their_own_primary(character, settings):
    from characters.services import version_set_primary

    base = _ref(character, (1, 1, 1))
    teen = version_create(character=character, name="Teen", age_state="teen", emotional_state="happy")
    first = _ref(character, (2, 2, 2), version=teen)
    second = _ref(character, (3, 3, 3), version=teen)
    assert base.is_primary and first.is_primary and not second.is_primary
    version_set_primary(version=teen, reference=second)
    primaries = set(ReferenceImage.objects.filter(is_primary=True).values_list("pk", flat=True))
    assert primaries == {base.pk, second.pk}
    with pytest.raises(ValidationError):
        version_set_primary(version=teen, reference=base)
    # Deleting the version's primary promotes the version's other reference, not the character's.
    reference_delete(reference=ReferenceImage.objects.get(pk=second.pk))
    first.refresh_from_db()
    assert first.is_primary
    # The same image cannot be a reference twice, for the character or a version.
    with pytest.raises(ValidationError):
        _ref(character, (1, 1, 1), version=teen)


@pytest.mark.django_db
def test_a_reference_for_another_characters_version_is_refused_and_leaves_no_file(character, settings):
    other = character_create(project=character.project, name="Mei", design_prompt="1girl")
    theirs = version_create(character=other, name="Old")
    files = _files(settings)
    with pytest.raises(ValidationError) as refused:
        _ref(character, (4, 4, 4), version=theirs)
    assert "version" in refused.value.message_dict
    assert not ReferenceImage.objects.exists() and _files(settings) == files


@pytest.mark.django_db
def test_deleting_a_version_removes_its_reference_files(character, settings, django_capture_on_commit_callbacks):
    from characters.services import version_delete

    base = _ref(character, (1, 1, 1))
    teen = version_create(character=character, name="Teen")
    path = Path(_ref(character, (2, 2, 2), version=teen).image.path)
    with django_capture_on_commit_callbacks(execute=True):
        version_delete(version=teen)
    assert not path.exists() and Path(base.image.path).exists()
    assert list(ReferenceImage.objects.values_list("pk", flat=True)) == [base.pk]


@pytest.mark.django_db
def test_an_outfit_variation_replaces_the_outfit_unless_told_otherwise(character):
    assert variation_create(character=character, kind="outfit", name="Coat").replaces == "outfit"
    assert variation_create(character=character, kind="outfit", name="Cape", replaces="").replaces == ""
    assert variation_create(character=character, kind="pose", name="Jump").replaces == ""
    assert variation_create(character=character, kind="pose", name="Wig", replaces="hair").replaces == "hair"
    with pytest.raises(ValidationError):
        variation_create(character=character, kind="pose", name="Wings", replaces="wings")
