from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from characters.models import Character, ReferenceImage
from characters.services import character_add_reference
from tests.factories import CharacterFactory, make_project, png_bytes

pytestmark = pytest.mark.django_db

REFERENCES = reverse("admin:characters_referenceimage_changelist")
CHARACTERS = reverse("admin:characters_character_changelist")
ADD_REFERENCE = reverse("admin:characters_referenceimage_add")
_shades = itertools.count(1)


def add_reference(character, **kwargs) -> ReferenceImage:
    n = next(_shades)
    data = png_bytes(colour=(n % 256, (n // 256) % 256, 99))
    return character_add_reference(character=character, upload=io.BytesIO(data), **kwargs)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def character(owner):
    return CharacterFactory(project=make_project(owner), name="Kai")


# --- Changelists ---------------------------------------------------------------------------------


def count_queries(client, url: str) -> tuple[int, object]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries), response


def test_reference_changelist_queries_do_not_grow_with_rows(admin_client, owner):
    def add(n: int) -> None:
        for i in range(n):
            # Each in its own project: the project column must come from the join, not a query per row.
            add_reference(CharacterFactory(project=make_project(owner, name=f"P{next(_shades)}-{i}")))

    add(3)
    few, _ = count_queries(admin_client, REFERENCES)
    add(27)
    many, response = count_queries(admin_client, REFERENCES)

    assert len(response.context["cl"].result_list) == 30
    assert many == few


def test_character_changelist_queries_do_not_grow_with_rows(admin_client, owner):
    project = make_project(owner)

    def add(n: int) -> None:
        for _ in range(n):
            character = CharacterFactory(project=project)
            add_reference(character)
            add_reference(character)

    add(3)
    few, _ = count_queries(admin_client, CHARACTERS)
    add(27)
    many, response = count_queries(admin_client, CHARACTERS)

    assert len(response.context["cl"].result_list) == 30
    assert many == few


def test_character_list_shows_the_primary_reference_and_the_count(admin_client, character):
    primary = add_reference(character)
    other = add_reference(character)

    response = admin_client.get(CHARACTERS)
    html = response.content.decode()

    thumb = reverse("admin:characters_referenceimage_thumb", args=[primary.pk])
    assert f'<img loading="lazy" src="{thumb}"' in html  # a thumbnail, never the full-size file
    assert other.image.url not in html and primary.image.url not in html
    row = response.context["cl"].result_list[0]
    assert row.reference_count == 2


def test_reference_thumbnails_are_bounded_and_escaped(admin_client, owner):
    character = CharacterFactory(project=make_project(owner), name='<script>alert("x")</script>')
    reference = add_reference(character)

    html = admin_client.get(REFERENCES).content.decode()

    thumb = reverse("admin:characters_referenceimage_thumb", args=[reference.pk])
    assert f'<img loading="lazy" src="{thumb}"' in html
    assert "max-width:96px;max-height:96px" in html
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; reference" in html


def test_character_page_shows_references_inline_with_thumbnails(admin_client, character):
    reference = add_reference(character, note="front view")

    html = admin_client.get(reverse("admin:characters_character_change", args=[character.pk])).content.decode()

    thumb = reverse("admin:characters_referenceimage_thumb", args=[reference.pk])
    assert f'<img loading="lazy" src="{thumb}"' in html
    assert "front view" in html


# --- Adding a reference through the service ------------------------------------------------------


def test_adding_a_renamed_text_file_is_a_form_error(admin_client, character, settings):
    upload = SimpleUploadedFile("kai.png", b"this is a text file, not an image", content_type="image/png")

    response = admin_client.post(ADD_REFERENCE, {"character": character.pk, "upload": upload, "note": ""})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["upload"]
    assert "not a readable image" in errors[0]
    assert not ReferenceImage.objects.exists()
    assert stored_files(settings) == []


def test_adding_an_image_goes_through_the_service(admin_client, character):
    data = png_bytes(width=80, height=120)
    upload = SimpleUploadedFile("../../etc/evil name.png", data, content_type="image/png")

    response = admin_client.post(ADD_REFERENCE, {"character": character.pk, "upload": upload, "note": "side"})

    assert response.status_code == 302
    reference = ReferenceImage.objects.get()
    assert reference.is_primary  # the first reference of a character
    assert (reference.width, reference.height) == (80, 120)
    assert len(reference.sha256) == 64
    assert reference.original_name == "evil name.png"
    assert "evil" not in reference.image.name
    assert reference.image.name.startswith(f"references/{character.pk}/")
    assert reference.note == "side"
    character.refresh_from_db()
    assert character.palette  # extracted by the service


def test_adding_the_same_image_twice_is_a_form_error(admin_client, character):
    data = png_bytes(colour=(5, 6, 7))
    admin_client.post(ADD_REFERENCE, {"character": character.pk, "upload": SimpleUploadedFile("a.png", data)})

    response = admin_client.post(
        ADD_REFERENCE, {"character": character.pk, "upload": SimpleUploadedFile("b.png", data)}
    )

    assert response.status_code == 200
    assert "already a reference" in response.context["adminform"].form.errors["upload"][0]
    assert ReferenceImage.objects.count() == 1


def test_adding_as_primary_moves_the_primary(admin_client, character):
    first = add_reference(character)

    admin_client.post(
        ADD_REFERENCE,
        {
            "character": character.pk,
            "upload": SimpleUploadedFile("b.png", png_bytes(colour=(9, 9, 9))),
            "make_primary": "on",
        },
    )

    first.refresh_from_db()
    assert not first.is_primary
    assert ReferenceImage.objects.get(is_primary=True).pk != first.pk


def test_reference_change_page_edits_only_the_note(admin_client, character):
    reference = add_reference(character)
    url = reverse("admin:characters_referenceimage_change", args=[reference.pk])

    assert set(admin_client.get(url).context["adminform"].form.fields) == {"note"}
    management = {f"embeddings-{k}": "0" for k in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS")}
    response = admin_client.post(
        url, {"note": "three-quarter view", "is_primary": "", "sha256": "forged", **management}
    )

    assert response.status_code == 302
    reference.refresh_from_db()
    assert (reference.note, reference.is_primary) == ("three-quarter view", True)
    assert reference.sha256 != "forged"


# --- Make primary --------------------------------------------------------------------------------


def test_make_primary(admin_client, character):
    first, second = add_reference(character), add_reference(character)

    response = admin_client.post(
        REFERENCES, {"action": "make_primary", "index": 0, "_selected_action": [second.pk]}, follow=True
    )

    assert "1 reference(s) made primary." in messages_of(response)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.is_primary, second.is_primary) == (False, True)


def test_make_primary_refuses_two_of_one_character(admin_client, character, owner):
    first, second = add_reference(character), add_reference(character)
    other = CharacterFactory(project=character.project, name="Mei")
    add_reference(other)
    mei_second = add_reference(other)

    response = admin_client.post(
        REFERENCES,
        {"action": "make_primary", "index": 0, "_selected_action": [first.pk, second.pk, mei_second.pk]},
        follow=True,
    )

    [message] = messages_of(response)
    assert "select one per character" in message
    assert "Kai" in message
    assert "Mei" not in message
    assert set(ReferenceImage.objects.filter(is_primary=True).values_list("pk", flat=True)) == {
        first.pk,
        ReferenceImage.objects.filter(character=other).order_by("pk").first().pk,
    }


def test_deleting_the_primary_reference_promotes_another(admin_client, character, django_capture_on_commit_callbacks):
    first, second = add_reference(character), add_reference(character)
    path = Path(first.image.path)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            reverse("admin:characters_referenceimage_delete", args=[first.pk]), {"post": "yes"}
        )

    assert response.status_code == 302
    second.refresh_from_db()
    assert second.is_primary
    assert not path.exists()


def test_deleting_a_character_removes_its_reference_files(admin_client, character, django_capture_on_commit_callbacks):
    path = Path(add_reference(character).image.path)

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:characters_character_delete", args=[character.pk]), {"post": "yes"})

    assert not Character.objects.filter(pk=character.pk).exists()
    assert not path.exists()


# --- Embeddings ----------------------------------------------------------------------------------


def test_embeddings_are_read_only(admin_client, character):
    import struct

    from characters.models import ReferenceEmbedding

    reference = add_reference(character)
    embedding = ReferenceEmbedding.objects.create(
        reference=reference, model_id="ccip", dim=2, vector=struct.pack("<2f", 0.5, -0.25)
    )
    url = reverse("admin:characters_referenceembedding_change", args=[embedding.pk])

    response = admin_client.get(url)
    assert response.status_code == 200
    assert "0.5000, -0.2500" in response.content.decode()
    assert admin_client.post(url, {"model_id": "forged", "dim": 9}).status_code == 403
    assert admin_client.get(reverse("admin:characters_referenceembedding_add")).status_code == 403
    embedding.refresh_from_db()
    assert embedding.model_id == "ccip"


def test_palette_swatches_show_only_well_formed_colours(admin_client, owner):
    character = CharacterFactory(project=make_project(owner), palette=["#aabbcc", "red;background:url(x)"])

    html = admin_client.get(reverse("admin:characters_character_change", args=[character.pk])).content.decode()

    assert "background:#aabbcc" in html
    assert "url(x)" not in html


def test_bulk_delete_goes_through_the_service(admin_client, character, django_capture_on_commit_callbacks):
    first, second, third = (add_reference(character) for _ in range(3))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            REFERENCES, {"action": "delete_selected", "post": "yes", "_selected_action": [first.pk, second.pk]}
        )

    assert response.status_code == 302
    assert list(ReferenceImage.objects.values_list("pk", "is_primary")) == [(third.pk, True)]
    assert not Path(first.image.path).exists()


# --- Consistency engine: attributes, versions' references ------------------------------------------


def test_character_page_edits_attributes_inline_and_the_consistency_fields(admin_client, character):
    from characters.services import character_set_attributes

    character_set_attributes(character=character, attributes=[{"type": "hair", "value": "silver", "priority": 70}])
    page = admin_client.get(reverse("admin:characters_character_change", args=[character.pk])).content.decode()
    assert 'name="attribute_set-0-value"' in page and 'value="silver"' in page
    assert 'name="palette_gated"' in page and 'name="palette_threshold"' in page
    assert 'name="attributes"' not in page  # the old JSON is no longer edited (nor read)


def test_a_reference_added_to_a_version_shows_on_the_versions_page(admin_client, character):
    from characters.services import version_create

    version = version_create(character=character, name="Teen", age_state="teen")
    other = version_create(character=CharacterFactory(project=character.project, name="Mei"), name="Old")
    upload = SimpleUploadedFile("teen.png", png_bytes(colour=(40, 50, 60)), content_type="image/png")
    refused = admin_client.post(ADD_REFERENCE, {"character": character.pk, "version": other.pk, "upload": upload})
    assert refused.status_code == 200 and not ReferenceImage.objects.exists()

    upload = SimpleUploadedFile("teen.png", png_bytes(colour=(40, 50, 60)), content_type="image/png")
    response = admin_client.post(ADD_REFERENCE, {"character": character.pk, "version": version.pk, "upload": upload})
    assert response.status_code == 302
    reference = ReferenceImage.objects.get()
    assert reference.version == version and reference.is_primary
    page = admin_client.get(reverse("admin:characters_characterversion_change", args=[version.pk])).content.decode()
    assert reverse("admin:characters_referenceimage_change", args=[reference.pk]) in page


def test_deleting_a_version_in_the_admin_removes_its_reference_files(
    admin_client, character, django_capture_on_commit_callbacks
):
    from characters.services import version_create

    version = version_create(character=character, name="Teen")
    path = Path(add_reference(character, version=version).image.path)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(reverse("admin:characters_characterversion_delete", args=[version.pk]), {"post": "yes"})
    assert not ReferenceImage.objects.exists() and not path.exists()
