"""The character page's consistency engine in real Chromium: attributes as rows, a version's
states and its own reference, a variation that replaces an attribute, the resolved prompt."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from characters.models import CharacterAttribute, ReferenceImage
from tests.browser.conftest import screenshot
from tests.factories import png_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PASSWORD = "storyboards-at-dawn-42"


def off_the_loop(fn, *args, **kwargs):
    """Run ``fn`` in a worker thread: Playwright's loop is running in this one."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def call():
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def make_world():
    from characters.services import character_create, version_create
    from tests.factories import make_project

    user = get_user_model().objects.create(username="producer", password=make_password(PASSWORD))
    project = make_project(user, name="Skyline Academy")
    character = character_create(
        project=project, name="Kai", design_prompt="1boy, silver hair, navy school uniform", trigger_word="kaiSky"
    )
    version = version_create(character=character, name="Young")
    return character.pk, version.pk


def test_attributes_versions_and_a_replacing_variation_on_the_character_page(page, tmp_path, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    character_id, version_id = off_the_loop(make_world)
    page.goto("/login/")
    page.fill("#id_username", "producer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))

    page.goto(f"/characters/{character_id}/")
    page.wait_for_selector("text=empty = the project's (0.70)")
    page.select_option("#id_attr-0-type", "hair")
    page.fill("#id_attr-0-value", "silver")
    page.fill("#id_attr-0-prompt_tokens", "(silver hair:1.2), ahoge")
    page.fill("#id_attr-0-priority", "90")
    page.select_option("#id_attr-1-type", "outfit")
    page.fill("#id_attr-1-value", "navy school uniform")
    page.click("button:has-text('Save character')")
    page.wait_for_selector("text=Character saved.")
    rows = off_the_loop(lambda: list(CharacterAttribute.objects.values_list("type", "priority")))
    assert rows == [("hair", 90), ("outfit", 50)]
    page.wait_for_selector("[data-resolved-prompt]:has-text('ahoge')")

    block = f"[data-version='{version_id}']"
    page.click(f"{block} summary")
    page.select_option(f"#id_v{version_id}-age_state", "teen")
    page.select_option(f"#id_v{version_id}-emotional_state", "happy")
    page.click(f"{block} button:has-text('Save states')")
    page.wait_for_selector("text=Version “Young” saved.")
    page.click(f"{block} summary")
    reference = tmp_path / "young.png"
    reference.write_bytes(png_bytes(96, 128, (200, 120, 40)))
    page.set_input_files(f"#v{version_id}-image", str(reference))
    page.click(f"{block} button:has-text('Upload to Young')")
    page.wait_for_selector("text=Reference added.")
    page.wait_for_selector(f"{block} img[alt='Young reference 1']")
    assert page.inner_text(f"{block} .badge >> nth=0") == "Teen"
    stored = off_the_loop(lambda: list(ReferenceImage.objects.values_list("version_id", "is_primary")))
    assert stored == [(version_id, True)]

    page.click("summary:has-text('Add a variation')")
    variation_form = "form[action$='/variations/']"
    page.select_option(f"{variation_form} #id_kind", "pose")
    page.fill(f"{variation_form} #id_name", "Wig")
    page.fill(f"{variation_form} #id_prompt_delta", "long pink wig")
    page.select_option(f"{variation_form} #id_replaces", "hair")
    page.click("button:has-text('Add variation')")
    page.wait_for_selector("text=replaces hair")
    page.select_option("#p-variation", label="Pose: Wig")
    page.wait_for_selector("[data-resolved-prompt]:has-text('long pink wig')")
    prompt = page.inner_text("[data-resolved-prompt]")
    assert "ahoge" not in prompt and "navy school uniform" in prompt
    screenshot(page, "character-consistency")
    assert not page.console_errors  # type: ignore[attr-defined]
