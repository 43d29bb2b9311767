"""Character pages: create, design edits, references with thumbnails, versions, variations."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse

from characters.models import Character, ReferenceImage
from tests.factories import CharacterFactory, VersionFactory, make_project, png_bytes

pytestmark = pytest.mark.django_db


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def design(**changes) -> dict:
    data = {
        "name": "Kai",
        "design_prompt": "1boy, silver hair",
        "trigger_word": "kaiSky",
        "negative_prompt": "",
        "consistency_threshold": "0.75",
        "attributes_text": "hair: silver\neyes: amber",
        "palette_text": "#aabbcc #112233",
    }
    return {**data, **changes}


def upload(name: str = "ref.png", data: bytes | None = None) -> io.BytesIO:
    stream = io.BytesIO(data if data is not None else png_bytes(64, 64, (10, 120, 200)))
    stream.name = name
    return stream


def test_create_and_edit_a_character(owner, project):
    client = client_for(owner)
    response = client.post(reverse("character-create", args=[project.pk]), design())
    character = Character.objects.get(project=project, name="Kai")
    assert response.url == reverse("character-detail", args=[character.pk])
    assert character.attributes == {"hair": "silver", "eyes": "amber"}
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


@pytest.mark.parametrize("field", ["design_prompt", "negative_prompt", "attributes_text"])
def test_free_text_too_long_is_a_form_error_and_nothing_is_saved(owner, project, field):
    # The page form shares the API's bound (tower.limits.TEXT_MAX_LENGTH).
    client = client_for(owner)
    long = "hair: " + "x" * 100_000 if field == "attributes_text" else "x" * 100_000
    created = client.post(reverse("character-create", args=[project.pk]), design(**{field: long}))
    assert created.status_code == 400
    assert "at most 20000 characters" in created.content.decode()
    assert not Character.objects.filter(project=project, name="Kai").exists()

    character = CharacterFactory(project=project, design_prompt="original", negative_prompt="", attributes={})
    edited = client.post(reverse("character-detail", args=[character.pk]), design(**{field: long}))
    assert edited.status_code == 400
    character.refresh_from_db()
    assert (character.design_prompt, character.negative_prompt, character.attributes) == ("original", "", {})


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
    ],
)
def test_outsider_gets_404_everywhere(outsider, project, name):
    character = CharacterFactory(project=project, name="Kai")
    client = client_for(outsider)
    url = reverse(name, args=[character.pk])
    assert client.get(url).status_code in (404, 405)
    assert client.post(url, {**design(name="Hijacked"), "kind": "outfit", "image": upload()}).status_code in (404, 405)
    assert Character.objects.get(pk=character.pk).name == "Kai"
    assert not ReferenceImage.objects.exists() and not character.versions.exists()
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
