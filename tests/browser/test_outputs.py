"""Inspecting outputs in real Chromium: the gallery's address bar follows its filters (Back shows
the previous grid), and the lightbox moves with the arrow keys and closes with Esc."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from playwright.sync_api import expect

from quality.models import QualityScore
from quality.services.verdicts import assets_quality_refresh
from tests.browser.test_studio import log_in, producer  # noqa: F401 (fixture)
from tests.factories import AssetFactory, JobFactory, make_project, png_bytes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

WAIT = 15_000  # ms, as the pages' default (expect's own is 5 s; two cores are shared)


def _outputs(owner, media_root) -> list[int]:
    """Four outputs, newest last: two passed, one failed, one video never scored."""
    project = make_project(owner, name="Skyline Academy")
    ids = []
    for index, (passed, kind) in enumerate([(True, "image"), (False, "image"), (True, "image"), (None, "video")]):
        job = JobFactory(project=project, prompt=f"shot {index}, rooftop at dusk")
        file = ContentFile(png_bytes(96, 96, (40 * index, 90, 160)), name=f"o{index}.png")
        asset = AssetFactory(project=project, job=job, file=file, kind=kind)
        if passed is not None:
            QualityScore.objects.create(asset=asset, metric="aesthetic", value=6.0 if passed else 3.0, passed=passed)
            assets_quality_refresh(asset_ids=[asset.pk])  # as scoring does with the rows it writes
        ids.append(asset.pk)
    return ids


def _grid(page) -> list[str]:
    return page.locator("#gallery-grid .tile").evaluate_all("tiles => tiles.map(t => t.dataset.asset)")


def test_filter_changes_then_back_show_the_grid_the_address_names(page, producer, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"
    _outputs(producer, settings.MEDIA_ROOT)
    log_in(page)
    page.goto("/gallery/")
    everything = _grid(page)
    assert len(everything) == 4

    page.select_option("#id_status", "passed")
    expect(page.locator("#gallery-grid .tile")).to_have_count(2, timeout=WAIT)
    assert page.url.endswith("/gallery/?status=passed")
    passed = _grid(page)

    page.select_option("#id_kind", "video")
    expect(page.locator("#gallery-grid .tile")).to_have_count(0, timeout=WAIT)
    assert "status=passed" in page.url and "kind=video" in page.url

    page.go_back()
    page.wait_for_url("**/gallery/?status=passed")
    expect(page.locator("#gallery-grid .tile")).to_have_count(2, timeout=WAIT)
    assert _grid(page) == passed
    # The form shows the filters of the grid shown, so the next change starts from them.
    assert page.input_value("#id_status") == "passed" and page.input_value("#id_kind") == ""

    page.go_back()
    page.wait_for_url("**/gallery/")
    expect(page.locator("#gallery-grid .tile")).to_have_count(4, timeout=WAIT)
    assert page.input_value("#id_status") == ""

    # A bookmark of a filtered address gives that grid.
    page.goto("/gallery/?status=failed")
    assert len(_grid(page)) == 1
    assert not page.console_errors  # type: ignore[attr-defined]


def test_lightbox_moves_with_the_arrow_keys_and_closes_with_esc(page, producer, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"
    _outputs(producer, settings.MEDIA_ROOT)
    log_in(page)
    page.goto("/gallery/")
    order = _grid(page)  # newest first
    # Waits through locators: the page's Content-Security-Policy forbids evaluating strings.
    shown = page.locator("#lightbox [data-asset-view]")

    page.locator(f'#gallery-grid .tile[data-asset="{order[1]}"]').click()
    expect(shown).to_have_attribute("data-asset-view", order[1], timeout=WAIT)
    assert page.locator("#lightbox").is_visible()
    assert page.locator("#lightbox [data-prompt]").inner_text().endswith("rooftop at dusk")

    page.keyboard.press("ArrowRight")
    expect(shown).to_have_attribute("data-asset-view", order[2], timeout=WAIT)
    page.keyboard.press("ArrowLeft")
    expect(shown).to_have_attribute("data-asset-view", order[1], timeout=WAIT)
    page.keyboard.press("ArrowLeft")
    expect(shown).to_have_attribute("data-asset-view", order[0], timeout=WAIT)
    page.keyboard.press("ArrowLeft")  # the first output: nothing before it, it stays
    assert shown.get_attribute("data-asset-view") == order[0]

    page.keyboard.press("Escape")
    expect(page.locator("#lightbox")).to_have_js_property("open", False, timeout=WAIT)
    # The dialog's close event (which empties it) fires after "open" turns false: wait for it.
    expect(page.locator("#lightbox-body")).to_be_empty(timeout=WAIT)
    assert not page.console_errors  # type: ignore[attr-defined]


def test_close_on_a_standalone_asset_page_returns_to_the_gallery(page, producer, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"
    ids = _outputs(producer, settings.MEDIA_ROOT)
    log_in(page)
    # The page of its own moves with the arrow keys (gallery order, newest first) and Esc closes it.
    page.goto(f"/assets/{ids[2]}/")
    page.keyboard.press("ArrowRight")
    page.wait_for_url(f"**/assets/{ids[1]}/")
    page.keyboard.press("ArrowLeft")
    page.wait_for_url(f"**/assets/{ids[2]}/")
    page.keyboard.press("Escape")
    page.wait_for_url("**/gallery/")
    page.goto(f"/assets/{ids[0]}/")
    page.get_by_role("link", name="Close").click()
    page.wait_for_url("**/gallery/")
    # Come from a filtered gallery (as after "Add to the character's dataset" in its lightbox):
    # Close goes back to it as it was left.
    page.goto("/gallery/?status=failed")
    page.evaluate(f"window.location.href = '/assets/{ids[1]}/'")
    page.wait_for_url(f"**/assets/{ids[1]}/")
    page.get_by_role("link", name="Close").click()
    page.wait_for_url("**/gallery/?status=failed")
    assert len(_grid(page)) == 1


def test_an_animated_tile_plays_on_hover_and_stops_after(page, producer, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"
    ids = _outputs(producer, settings.MEDIA_ROOT)
    log_in(page)
    page.goto("/gallery/")
    clip = page.locator(f'#gallery-grid .tile[data-asset="{ids[3]}"]')
    assert clip.locator("video").count() == 0  # a still until pointed at
    clip.hover()
    playing = clip.locator("video.hover-play")
    playing.wait_for()
    assert playing.get_attribute("src") == clip.get_attribute("data-play")
    page.mouse.move(2, 2)
    playing.wait_for(state="detached")
    still = page.locator(f'#gallery-grid .tile[data-asset="{ids[0]}"]')
    still.hover()
    assert still.locator("video").count() == 0 and still.get_attribute("data-play") is None
