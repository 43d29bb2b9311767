"""The gallery in real Chromium: scores and verdicts on the tiles, filtering without a reload."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from playwright.sync_api import expect

from quality.models import QualityScore
from quality.services.verdicts import assets_quality_refresh
from tests.browser.conftest import screenshot
from tests.browser.test_studio import PASSWORD, log_in, producer  # noqa: F401 (fixture)
from tests.factories import AssetFactory, CharacterFactory, JobFactory, make_project, png_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

COLOURS = [(214, 92, 120), (90, 140, 220), (240, 190, 80), (110, 200, 150), (160, 110, 220), (70, 70, 90)]


def test_gallery_shows_scores_and_filters_by_verdict_and_score(page, producer, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"  # where daphne serves files from
    project = make_project(producer, name="Skyline Academy")
    kai = CharacterFactory(project=project, name="Kai")
    scores = [(7.4, 0.82, True, True), (4.2, 0.77, False, True), (6.8, 0.41, True, False), (None, None, None, None)]
    scores += [(6.1, 0.9, True, True), (5.5, None, True, None)]
    for index, (colour, (aesthetic, similarity, a_ok, s_ok)) in enumerate(zip(COLOURS, scores, strict=True)):
        job = JobFactory(project=project, character=kai)
        asset = AssetFactory(
            project=project, job=job, file=ContentFile(png_bytes(256, 256, colour), name=f"a{index}.png")
        )
        if aesthetic is not None:
            QualityScore.objects.create(asset=asset, metric="aesthetic", value=aesthetic, passed=a_ok)
        if similarity is not None:
            QualityScore.objects.create(asset=asset, metric="character_similarity", value=similarity, passed=s_ok)
        assets_quality_refresh(asset_ids=[asset.pk])  # as scoring does with the rows it writes

    log_in(page)
    page.goto("/gallery/")
    tiles = page.locator("#gallery-grid .tile")
    assert tiles.count() == 6
    assert page.locator("#gallery-grid [data-badge]").count() == 6
    assert page.locator("#gallery-grid [data-badge=unscored]").count() == 1
    assert page.locator("#gallery-grid .verdict.failed").count() == 2
    assert page.get_by_text("A 7.4").is_visible() and page.get_by_text("S 0.82").is_visible()
    screenshot(page, "13-gallery-scores")

    page.select_option("#id_status", "failed")
    page.wait_for_url("**status=failed**")
    page.locator("#gallery-grid .tile").nth(1).wait_for()
    assert page.locator("#gallery-grid .tile").count() == 2
    assert page.locator("#gallery-grid .verdict.passed").count() == 0

    page.select_option("#id_status", "")
    page.fill("#id_min_aesthetic", "6")
    page.press("#id_min_aesthetic", "Tab")  # a change event, as a person leaving the field
    page.wait_for_url("**min_aesthetic=6**")
    # A locator wait: the page's Content-Security-Policy forbids evaluating strings in it.
    expect(page.locator("#gallery-grid .tile")).to_have_count(3, timeout=15_000)
    screenshot(page, "14-gallery-aesthetic-6")
    assert not page.console_errors  # type: ignore[attr-defined]
