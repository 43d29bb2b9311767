"""A character with one reference, version and variation: the world the API tests act on."""

from __future__ import annotations

import io

import pytest

from characters.services import character_add_reference, character_create, variation_create, version_create
from tests.factories import png_bytes


@pytest.fixture
def character(project):
    return character_create(project=project, name="Kai Nakamura", design_prompt="1boy, silver hair")


@pytest.fixture
def world(project, character):
    reference = character_add_reference(character=character, upload=io.BytesIO(png_bytes()), original_name="kai.png")
    version = version_create(character=character, name="Child")
    variation = variation_create(character=character, kind="outfit", name="Uniform")
    return {
        "project": project.pk,
        "character": character.pk,
        "reference": reference.pk,
        "version": version.pk,
        "variation": variation.pk,
    }
