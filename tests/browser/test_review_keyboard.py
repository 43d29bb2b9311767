"""The review page in real Chromium, driven by the keyboard alone: A, R then a digit, S, U."""

from __future__ import annotations

import hashlib

import pytest
from django.core.files.base import ContentFile

from characters.models import Character
from tests.browser.conftest import screenshot
from tests.browser.test_studio import PASSWORD, log_in, producer  # noqa: F401 (fixture)
from tests.factories import CharacterFactory, make_project, png_bytes
from training.models import DatasetImage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

COLOURS = [(214, 92, 120), (90, 140, 220), (240, 190, 80), (110, 200, 150)]


def add_image(character, colour, n: int) -> DatasetImage:
    data = png_bytes(320, 320, colour)
    image = DatasetImage(
        character=character,
        sha256=hashlib.sha256(data).hexdigest(),
        source="upload",
        width=320,
        height=320,
        caption=f"kai_tw, pose {n}",
    )
    image.image.save(f"k{n}.png", ContentFile(data), save=False)
    image.save()
    return image


def current(page) -> int:
    return int(page.locator("#review-card [data-image]").get_attribute("data-image"))


def wait_for_card(page, pk: int) -> None:
    # A selector, not a JS predicate: the page's Content-Security-Policy forbids Playwright's eval.
    page.wait_for_selector(f'#review-card[data-ready] [data-image="{pk}"]')


def test_review_with_the_keyboard(page, producer, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"  # where daphne serves files from
    project = make_project(producer, name="Skyline Academy")
    kai = CharacterFactory(project=project, name="Kai", trigger_word="kai_tw")
    images = [add_image(kai, colour, n) for n, colour in enumerate(COLOURS)]

    log_in(page)
    page.goto(f"/review/?project={project.pk}")
    assert current(page) == images[0].pk
    assert page.locator(f"#review-card img[data-next='{images[1].pk}']").count() == 1  # the next one preloaded
    assert page.locator("[data-count=left]").inner_text() == "4"
    screenshot(page, "review-keyboard-1")

    page.keyboard.press("a")  # approve
    wait_for_card(page, images[1].pk)
    assert page.locator("[data-count=reviewed]").inner_text() == "1"

    page.keyboard.press("r")  # reject…
    assert page.locator("#review-reject.armed").count() == 1
    page.keyboard.press("3")  # …for bad anatomy or hands
    wait_for_card(page, images[2].pk)

    page.keyboard.press("s")  # skip
    wait_for_card(page, images[3].pk)

    page.keyboard.press("u")  # undo the skip
    wait_for_card(page, images[2].pk)

    page.keyboard.press("r")
    page.keyboard.press("9")  # other: the note field takes the focus, Enter sends
    assert page.evaluate("document.activeElement.id") == "review-note"
    page.keyboard.type("a cat walks through the frame")
    page.keyboard.press("Enter")
    wait_for_card(page, images[3].pk)
    assert page.locator("[data-count=reviewed]").inner_text() == "3"
    screenshot(page, "review-keyboard-2")

    rows = {i.pk: i for i in DatasetImage.objects.filter(character=kai)}
    assert rows[images[0].pk].status == "approved"
    assert (rows[images[1].pk].status, rows[images[1].pk].rejection_categories) == ("rejected", ["bad_anatomy"])
    assert (rows[images[2].pk].rejection_categories, rows[images[2].pk].rejection_note) == (
        ["other"],
        "a cat walks through the frame",
    )
    assert rows[images[3].pk].status == "pending"
    assert Character.objects.get(pk=kai.pk).learned_negatives["extra fingers"] == 1

    page.keyboard.press("u")  # undo the "other" rejection: image 3 comes back, pending
    wait_for_card(page, images[2].pk)
    assert DatasetImage.objects.get(pk=images[2].pk).status == "pending"
    # Every key was an HTMX swap of the card: the page itself never reloaded (a reload shows a message).
    assert page.locator("ul.messages").count() == 0
    assert not page.console_errors  # type: ignore[attr-defined]
