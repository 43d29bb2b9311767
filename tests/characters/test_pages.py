"""Character pages: create, design edits, references with thumbnails, versions, variations."""

from __future__ import annotations

import io
import re

import pytest
from django.test import Client
from django.urls import reverse

from characters.models import Character, CharacterAttribute, CharacterVersion, ReferenceImage, Variation
from characters.services import character_set_attributes
from tests.factories import CharacterFactory, VersionFactory, make_project, png_bytes

pytestmark = pytest.mark.django_db


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def attribute_rows(*rows: dict, initial: int = 0) -> dict:
    """The design form's attribute formset as a browser posts it (prefix ``attr``)."""
    data = {"attr-TOTAL_FORMS": str(len(rows)), "attr-INITIAL_FORMS": str(initial)}
    for n, row in enumerate(rows):
        data.update({f"attr-{n}-{key}": value for key, value in row.items()})
    return data


def design(**changes) -> dict:
    data = {
        "name": "Kai",
        "design_prompt": "1boy, silver hair",
        "trigger_word": "kaiSky",
        "negative_prompt": "",
        "consistency_threshold": "0.75",
        "palette_text": "#aabbcc #112233",
        **attribute_rows(
            {"type": "hair", "value": "silver", "priority": "80"},
            {"type": "eyes", "value": "amber", "prompt_tokens": "amber eyes", "priority": "40"},
            {"type": "", "value": "", "prompt_tokens": "", "priority": "50"},  # a blank row: nothing
        ),
    }
    return {**data, **changes}


def attributes_of(character) -> list[tuple]:
    return list(
        CharacterAttribute.objects.filter(character=character).values_list("type", "value", "prompt_tokens", "priority")
    )


def upload(name: str = "ref.png", data: bytes | None = None) -> io.BytesIO:
    stream = io.BytesIO(data if data is not None else png_bytes(64, 64, (10, 120, 200)))
    stream.name = name
    return stream


def test_create_and_edit_a_character(owner, project):
    client = client_for(owner)
    response = client.post(reverse("character-create", args=[project.pk]), design())
    character = Character.objects.get(project=project, name="Kai")
    assert response.url == reverse("character-detail", args=[character.pk])
    assert attributes_of(character) == [("hair", "silver", "", 80), ("eyes", "amber", "amber eyes", 40)]
    assert character.palette == ["#aabbcc", "#112233"] and character.consistency_threshold == 0.75

    page = client.get(reverse("character-detail", args=[character.pk])).content.decode()
    assert 'style="background: #aabbcc"' in page and "kaiSky" in page


def test_bad_design_is_refused_inline_and_keeps_the_text(owner, project):
    character = CharacterFactory(project=project, design_prompt="original")
    response = client_for(owner).post(
        reverse("character-detail", args=[character.pk]),
        design(design_prompt="typed text", consistency_threshold="1.5", palette_text="red"),
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "must be between 0 and 1" in html and "not a #rrggbb colour" in html and "typed text" in html
    assert Character.objects.get(pk=character.pk).design_prompt == "original"


@pytest.mark.parametrize("field", ["design_prompt", "negative_prompt"])
def test_free_text_too_long_is_a_form_error_and_nothing_is_saved(owner, project, field):
    # The page form shares the API's bound (tower.core.limits.TEXT_MAX_LENGTH).
    client = client_for(owner)
    long = "x" * 100_000
    created = client.post(reverse("character-create", args=[project.pk]), design(**{field: long}))
    assert created.status_code == 400
    assert "at most 20000 characters" in created.content.decode()
    assert not Character.objects.filter(project=project, name="Kai").exists()

    character = CharacterFactory(project=project, design_prompt="original", negative_prompt="")
    edited = client.post(reverse("character-detail", args=[character.pk]), design(**{field: long}))
    assert edited.status_code == 400
    character.refresh_from_db()
    assert (character.design_prompt, character.negative_prompt, attributes_of(character)) == ("original", "", [])


def test_attributes_are_edited_as_rows(owner, project):
    character = CharacterFactory(project=project, design_prompt="1boy")
    hair, eyes = character_set_attributes(
        character=character, attributes=[{"type": "hair", "value": "silver"}, {"type": "eyes", "value": "amber"}]
    )
    client = client_for(owner)
    page = client.get(reverse("character-detail", args=[character.pk])).content.decode()
    assert page.count("data-attribute-row") == 4  # two attributes, two blank rows
    assert 'value="silver"' in page and '<option value="outfit">Outfit</option>' in page

    rows = attribute_rows(
        {"id": hair.pk, "type": "hair", "value": "white", "prompt_tokens": "(white hair:1.2)", "priority": "90"},
        {"id": eyes.pk, "type": "eyes", "value": "amber", "priority": "50", "DELETE": "on"},
        {"type": "outfit", "value": "navy school uniform", "priority": "60"},
        initial=2,
    )
    response = client.post(reverse("character-detail", args=[character.pk]), design(**{"attr-TOTAL_FORMS": "0"}) | rows)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert attributes_of(character) == [
        ("hair", "white", "(white hair:1.2)", 90),
        ("outfit", "navy school uniform", "", 60),
    ]
    preview = client.get(reverse("character-preview", args=[character.pk]), HTTP_HX_REQUEST="true").content.decode()
    assert "kaiSky, 1boy, silver hair, (white hair:1.2), navy school uniform" in preview


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"type": "hair", "value": "a"}, {"type": "hair", "value": "b"}], "one attribute per type"),
        ([{"type": "hair", "value": "a", "priority": "101"}], "less than or equal to 100"),
        ([{"type": "hair", "value": ""}], "an attribute needs a value"),
        ([{"type": "wings", "value": "a"}], "Select a valid choice"),
        ([{"type": "hair", "value": "x" * 201}], "at most 200 characters"),
    ],
)
def test_bad_attribute_rows_are_refused_inline_and_nothing_changes(owner, project, rows, message):
    character = CharacterFactory(project=project, design_prompt="original")
    character_set_attributes(character=character, attributes=[{"type": "eyes", "value": "amber"}])
    data = design(design_prompt="typed") | attribute_rows(*rows)
    response = client_for(owner).post(reverse("character-detail", args=[character.pk]), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert attributes_of(character) == [("eyes", "amber", "", 50)]
    assert Character.objects.get(pk=character.pk).design_prompt == "original"


def test_similarity_threshold_empty_follows_the_project(owner, project):
    character = CharacterFactory(project=project, consistency_threshold=0.9)
    client = client_for(owner)
    page = client.get(reverse("character-detail", args=[character.pk])).content.decode()
    assert "empty = the project&#x27;s (0.70)" in page or "empty = the project's (0.70)" in page
    assert "Similarity threshold 0.90 (this character" in page
    response = client.post(
        reverse("character-detail", args=[character.pk]),
        design(consistency_threshold="", palette_gated="on", palette_threshold="12.5"),
    )
    assert response.status_code == 302
    character.refresh_from_db()
    assert character.consistency_threshold is None
    assert character.palette_gated and character.palette_threshold == 12.5
    page = client.get(reverse("character-detail", args=[character.pk])).content.decode()
    assert "Similarity threshold 0.70 (the project" in page and "mean ΔE of 12.5" in page


def test_versions_have_states_and_references_of_their_own(owner, project):
    character = CharacterFactory(project=project)
    client = client_for(owner)
    added = client.post(
        reverse("character-version-add", args=[character.pk]),
        {"name": "Old", "age_state": "elder", "emotional_state": "sad"},
    )
    assert added.status_code == 302
    version = CharacterVersion.objects.get(character=character)
    assert (version.age_state, version.emotional_state) == ("elder", "sad")

    changed = client.post(
        reverse("character-version-states", args=[version.pk]),
        {f"v{version.pk}-age_state": "child", f"v{version.pk}-emotional_state": "happy"},
    )
    assert changed.status_code == 302
    version.refresh_from_db()
    assert (version.age_state, version.emotional_state) == ("child", "happy")

    own = client.post(reverse("character-reference-add", args=[character.pk]), {"image": upload()})
    theirs = client.post(
        reverse("character-reference-add", args=[character.pk]),
        {"image": upload(data=png_bytes(64, 64, (200, 30, 30))), "version": version.pk},
    )
    assert own.status_code == theirs.status_code == 302
    base, young = ReferenceImage.objects.order_by("pk")
    assert (base.version, base.is_primary) == (None, True)
    assert (young.version, young.is_primary) == (version, True)  # the version's own first is its primary
    page = client.get(reverse("character-detail", args=[character.pk])).content.decode()
    block = page[page.index(f'data-version="{version.pk}"') :]
    assert f'src="{young.image.url}"' in block[: block.index("</details>")]
    assert "Child" in block and "Happy" in block


def test_a_reference_for_another_characters_version_is_refused_on_the_page(owner, project):
    character = CharacterFactory(project=project)
    other = VersionFactory(character=CharacterFactory(project=project))
    response = client_for(owner).post(
        reverse("character-reference-add", args=[character.pk]), {"image": upload(), "version": other.pk}
    )
    assert response.status_code == 400 and b"Select a valid choice" in response.content
    assert not ReferenceImage.objects.exists()


def test_viewer_and_outsider_cannot_change_a_versions_states(viewer, outsider, project):
    version = VersionFactory(character=CharacterFactory(project=project), age_state="adult")
    url = reverse("character-version-states", args=[version.pk])
    data = {f"v{version.pk}-age_state": "child", f"v{version.pk}-emotional_state": "happy"}
    assert client_for(viewer).post(url, data).status_code == 403
    assert client_for(outsider).post(url, data).status_code == 404
    assert client_for(outsider).get(url).status_code in (404, 405)
    version.refresh_from_db()
    assert version.age_state == "adult"


def test_a_variation_says_what_it_replaces(owner, project):
    character = CharacterFactory(project=project, design_prompt="1boy")
    character_set_attributes(character=character, attributes=[{"type": "hair", "value": "silver hair"}])
    client = client_for(owner)
    for name, kind, replaces in (("Wig", "pose", "hair"), ("Coat", "outfit", ""), ("Cape", "outfit", "-")):
        data = {"kind": kind, "name": name, "prompt_delta": name.lower(), "replaces": replaces}
        assert client.post(reverse("character-variation-add", args=[character.pk]), data).status_code == 302
    assert dict(Variation.objects.values_list("name", "replaces")) == {"Wig": "hair", "Coat": "outfit", "Cape": ""}
    page = client.get(reverse("character-detail", args=[character.pk])).content.decode()
    assert "replaces hair" in page and "replaces outfit" in page
    wig = Variation.objects.get(name="Wig")
    preview = client.get(reverse("character-preview", args=[character.pk]), {"variation": wig.pk}).content.decode()
    assert "silver hair" not in preview and "wig" in preview


def test_reference_upload_shows_a_thumbnail_and_sets_the_palette(owner, project):
    character = CharacterFactory(project=project)
    client = client_for(owner)
    response = client.post(
        reverse("character-reference-add", args=[character.pk]), {"image": upload(), "note": "front"}
    )
    assert response.status_code == 302
    reference = ReferenceImage.objects.get(character=character)
    assert reference.is_primary and Character.objects.get(pk=character.pk).palette
    page = client.get(reverse("character-detail", args=[character.pk])).content.decode()
    assert f'src="{reference.image.url}"' in page and "primary" in page


def test_a_file_that_is_not_an_image_is_refused_inline(owner, project):
    character = CharacterFactory(project=project)
    response = client_for(owner).post(
        reverse("character-reference-add", args=[character.pk]), {"image": upload("evil.png", b"<?php echo 1; ?>")}
    )
    assert response.status_code == 400
    assert b"not a readable image" in response.content
    assert not ReferenceImage.objects.exists()


def test_versions_and_variations_and_the_resolved_prompt(owner, project):
    character = CharacterFactory(project=project, trigger_word="kaiSky", design_prompt="1boy, silver hair")
    client = client_for(owner)
    assert (
        client.post(
            reverse("character-version-add", args=[character.pk]), {"name": "Older", "prompt_delta": "adult, taller"}
        ).status_code
        == 302
    )
    assert (
        client.post(
            reverse("character-variation-add", args=[character.pk]),
            {"kind": "outfit", "name": "Winter", "prompt_delta": "winter coat"},
        ).status_code
        == 302
    )
    version = character.versions.get()
    variation = character.variations.get()
    preview = client.get(
        reverse("character-preview", args=[character.pk]),
        {"version": version.pk, "variation": variation.pk, "mode": "production"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "<html" not in preview
    assert "kaiSky, 1boy, silver hair, adult, taller, winter coat" in preview
    assert "25" in preview  # the production preset's steps

    bad = client.post(reverse("character-variation-add", args=[character.pk]), {"kind": "hat", "name": ""})
    assert bad.status_code == 400 and b"errorlist" in bad.content


def test_another_projects_version_is_ignored_by_the_preview(owner, outsider, project):
    character = CharacterFactory(project=project, design_prompt="1boy")
    foreign = VersionFactory(
        character=CharacterFactory(project=make_project(outsider, name="X")), prompt_delta="SECRET"
    )
    html = client_for(owner).get(reverse("character-preview", args=[character.pk]), {"version": foreign.pk}).content
    assert b"SECRET" not in html


@pytest.mark.parametrize(
    "name",
    [
        "character-detail",
        "character-reference-add",
        "character-version-add",
        "character-variation-add",
        "character-preview",
        "character-version-states",
    ],
)
def test_outsider_gets_404_everywhere(outsider, project, name):
    character = CharacterFactory(project=project, name="Kai")
    version = VersionFactory(character=character)
    client = client_for(outsider)
    url = reverse(name, args=[version.pk if name == "character-version-states" else character.pk])
    assert client.get(url).status_code in (404, 405)
    assert client.post(url, {**design(name="Hijacked"), "kind": "outfit", "image": upload()}).status_code in (404, 405)
    assert Character.objects.get(pk=character.pk).name == "Kai"
    assert not ReferenceImage.objects.exists() and list(character.versions.all()) == [version]
    assert client.post(reverse("character-create", args=[project.pk]), design()).status_code == 404


def test_viewer_cannot_upload_and_csrf_is_enforced(viewer, owner, project):
    character = CharacterFactory(project=project)
    assert (
        client_for(viewer)
        .post(reverse("character-reference-add", args=[character.pk]), {"image": upload()})
        .status_code
        == 403
    )
    forged = client_for(owner, enforce_csrf_checks=True).post(
        reverse("character-detail", args=[character.pk]), design(name="Forged")
    )
    assert forged.status_code == 403
    assert Character.objects.get(pk=character.pk).name != "Forged" and not ReferenceImage.objects.exists()


def test_the_list_shows_each_characters_effective_similarity_threshold(owner, project):
    CharacterFactory(project=project, name="Follows")
    CharacterFactory(project=project, name="Strict", consistency_threshold=0.9)
    html = client_for(owner).get(reverse("character-list")).content.decode()
    follows = html[html.index(">Follows<") :]
    strict = html[html.index(">Strict<") :]
    assert re.search(r"<td title=\"the project's\">0\.70 <span", follows[: follows.index("</tr>")])
    assert re.search(r"<td title=\"this character's\">0\.90</td>", strict[: strict.index("</tr>")])
