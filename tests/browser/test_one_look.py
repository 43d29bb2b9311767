"""One look in real Chromium: the admin is dark and its wide tables scroll inside their box at
1440 px instead of being clipped; the error pages wear the studio's theme."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from tests.browser.conftest import screenshot
from tests.factories import JobFactory, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PASSWORD = "curation-console-7"
DARK = "rgb(18, 20, 23)"  # --bg / --body-bg


def is_dark(colour: str) -> bool:
    red, green, blue = (int(c) for c in colour.removeprefix("rgb(").removesuffix(")").split(",")[:3])
    return max(red, green, blue) < 60


@pytest.fixture
def superuser(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def test_admin_is_dark_and_a_long_wide_job_table_keeps_its_scrollbar_on_screen_at_1440(page, superuser):
    project = make_project(superuser, name="Cyberpunk Goblin Slayer")
    for n in range(40):
        JobFactory(project=project, label=f"cfg=7.5,steps=28,sampler=dpmpp_2m,scheduler=karras,lora=kai_v{n}," * 3)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto("/admin/login/")
    assert is_dark(page.evaluate("getComputedStyle(document.body).backgroundColor"))
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.goto("/admin/generation/job/")
    page.locator("#result_list").wait_for()
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == DARK
    assert page.evaluate("document.documentElement.scrollWidth") <= 1440  # the page never scrolls sideways
    results = page.locator("#changelist-form .results")
    assert results.evaluate("r => r.scrollWidth > r.clientWidth")  # the table is wider than its box...
    box = results.bounding_box()
    # ...and the box's bottom edge, where its scrollbar is, is inside the window: not clipped.
    assert box is not None and box["x"] + box["width"] <= 1440 and box["y"] + box["height"] <= 900
    results.evaluate("r => { r.scrollLeft = r.scrollWidth; }")
    last = page.locator("#result_list thead th").last
    assert last.bounding_box()["x"] + last.bounding_box()["width"] <= box["x"] + box["width"] + 1
    screenshot(page, "one-look-admin-jobs-1440")


def test_error_page_wears_the_studio_theme(page, superuser):
    response = page.goto("/no-such-page/")
    assert response is not None and response.status == 404
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == DARK
    assert page.get_by_role("heading", name="Nothing here").is_visible()


def test_file_inputs_and_fieldsets_are_styled(page, superuser):
    project = make_project(superuser, name="Skyline Academy")
    page.goto("/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    page.goto("/ingest/")
    file_input = page.locator("input[type=file]").first
    assert file_input.evaluate("e => getComputedStyle(e).borderStyle") == "dashed"
    button = file_input.evaluate("e => getComputedStyle(e, '::file-selector-button').backgroundColor")
    assert is_dark(button)  # not the browser's light grey button
    fieldset = page.locator("form fieldset").first  # a plain <fieldset>: tower.css's own rule
    assert fieldset.evaluate("e => getComputedStyle(e).borderTopColor") == "rgb(46, 51, 59)"  # --line
    page.goto(f"/projects/{project.pk}/")
    # The style form's presets (its LoRA rows are a borderless fieldset on purpose).
    preset = page.locator("fieldset:has(legend:has-text('Draft preset'))")
    assert preset.evaluate("e => getComputedStyle(e).borderTopColor") == "rgb(46, 51, 59)"  # --line


def test_api_docs_render_dark_with_a_way_back(page, superuser):
    page.goto("/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    page.goto("/api/docs/")
    page.locator(".swagger-ui .info").wait_for()  # Swagger UI started (its script is a file: CSP)
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == DARK
    assert page.locator(".swagger-ui").evaluate("e => getComputedStyle(e).filter").startswith("invert(")
    page.get_by_role("link", name="Back to the studio").click()
    page.wait_for_url("**/")
    assert not page.console_errors  # type: ignore[attr-defined]
