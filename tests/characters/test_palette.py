"""The palette: a backdrop is not a character colour, and an upload never replaces a palette someone entered."""

from __future__ import annotations

import io

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image, ImageDraw

from characters.models import Character
from characters.palette import extract_palette
from tests.factories import CharacterFactory

pytestmark = pytest.mark.django_db

SKIN, COAT = (250, 220, 190), (20, 30, 120)


def sheet(backdrop: tuple[int, int, int], *, fmt: str = "PNG") -> bytes:
    """A figure (a head and a coat) on a plain backdrop that fills most of the picture."""
    image = Image.new("RGB", (400, 600), backdrop)
    draw = ImageDraw.Draw(image)
    draw.ellipse((150, 80, 250, 180), fill=SKIN)
    draw.rectangle((140, 180, 260, 560), fill=COAT)
    out = io.BytesIO()
    image.save(out, format=fmt, quality=92)
    return out.getvalue()


def rgb(hex_colour: str) -> tuple[int, ...]:
    return tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 30) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("backdrop", [(240, 240, 240), (90, 160, 90)])
def test_extraction_leaves_the_backdrop_out(backdrop, fmt):
    colours = [rgb(c) for c in extract_palette(sheet(backdrop, fmt=fmt))]
    assert not any(near(c, backdrop) for c in colours)
    assert near(colours[0], COAT) and any(near(c, SKIN) for c in colours)


def test_a_flat_picture_still_has_its_colour():
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(out, format="PNG")
    assert extract_palette(out.getvalue()) == ["#0ac81e"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def upload_reference(client: Client, character: Character, data: bytes, **extra):
    from django.core.files.uploadedfile import SimpleUploadedFile

    image = SimpleUploadedFile("ref.png", data, content_type="image/png")
    return client.post(reverse("character-reference-add", args=[character.pk]), {"image": image, **extra})


def test_an_upload_never_replaces_a_palette_someone_entered(owner, project):
    character = CharacterFactory(project=project, palette=["#ff0000", "#00ff00"])
    client = client_for(owner)
    assert upload_reference(client, character, sheet((240, 240, 240)), primary="on").status_code == 302

    character.refresh_from_db()
    assert character.palette == ["#ff0000", "#00ff00"]
    page = client.get(reverse("character-detail", args=[character.pk])).text
    assert "data-palette-suggestion" in page and "Use these colours" in page
    assert "#f0f0f0" not in page  # the backdrop is not suggested either


def test_use_these_colours_takes_the_suggestion(owner, project):
    character = CharacterFactory(project=project, palette=["#ff0000"])
    client = client_for(owner)
    upload_reference(client, character, sheet((240, 240, 240)))
    response = client.post(reverse("character-palette-use", args=[character.pk]))

    assert response.status_code == 302
    character.refresh_from_db()
    assert character.palette != ["#ff0000"] and near(rgb(character.palette[0]), COAT)
    page = client.get(reverse("character-detail", args=[character.pk])).text
    assert "data-palette-suggestion" not in page  # nothing left to suggest


def test_an_empty_palette_is_filled_from_the_first_reference(owner, project):
    character = CharacterFactory(project=project, palette=[])
    upload_reference(client_for(owner), character, sheet((240, 240, 240)))
    character.refresh_from_db()
    assert character.palette and not any(near(rgb(c), (240, 240, 240)) for c in character.palette)


def test_use_these_colours_needs_edit_rights(owner, viewer, outsider, project):
    character = CharacterFactory(project=project, palette=["#ff0000"])
    upload_reference(client_for(owner), character, sheet((240, 240, 240)))
    url = reverse("character-palette-use", args=[character.pk])
    assert client_for(viewer).post(url).status_code == 403
    assert client_for(outsider).post(url).status_code == 404
    character.refresh_from_db()
    assert character.palette == ["#ff0000"]
