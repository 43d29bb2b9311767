"""The Generate form in real Chromium: a prompt typed key by key while other fields change is
submitted exactly as typed (the form re-renders only what depends on a change, never a field a
person is editing).

Every preview request the form makes is held until the test releases it, so each answer arrives
while the person is still typing: the order that lost the first letters of a prompt, made certain.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from playwright.sync_api import Error as PlaywrightError

from generation.models import Job
from generation.services.templates import template_sync_shipped
from tests.browser.test_studio import PASSWORD, log_in, producer  # noqa: F401 (fixture)
from tests.factories import CharacterFactory, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PREVIEW = re.compile(r"/generate/\?")


class Held:
    """Preview requests held by Playwright's router until released, one at a time."""

    def __init__(self, page) -> None:
        self.page = page
        self.routes: list = []
        page.route(PREVIEW, lambda route: self.routes.append(route))

    def release(self) -> None:
        """Answer every held request (and any sent meanwhile) until the form has none open."""
        released = 0
        deadline = time.monotonic() + 15
        while True:
            while self.routes:
                route = self.routes.pop(0)
                # A request htmx aborted (hx-sync replaces an open request) cannot be answered.
                with contextlib.suppress(PlaywrightError):
                    route.fulfill(response=route.fetch())
                released += 1
            # htmx marks the form while a request is open; its answer has been swapped in after.
            idle = self.page.evaluate("!document.querySelector('#generate-form form.htmx-request')")
            if released and idle and not self.routes:
                return
            assert time.monotonic() < deadline, "the form's preview requests did not settle"


def test_a_prompt_typed_while_other_fields_change_is_submitted_exactly(page, producer, stack):  # noqa: F811
    project = make_project(producer, name="Skyline Academy")
    CharacterFactory(project=project, name="Kai", trigger_word="kaiSky")
    template_sync_shipped()
    typed = "a sunlit rooftop at dusk, wind in the banners"

    log_in(page)
    page.goto(f"/generate/?project={project.pk}")
    page.wait_for_selector("#generate-form form")
    held = Held(page)
    prompt = page.locator("#id_prompt")
    prompt.click()
    prompt.press_sequentially(typed[:9], delay=60)  # "a sunlit "

    page.select_option("#id_template", label="Weightless image (test pattern)")
    prompt.press_sequentially(typed[9:17], delay=60)  # typing on while the preview is on its way
    held.release()
    prompt.press_sequentially(typed[17:25], delay=60)

    page.select_option("#id_mode", "production")
    prompt.press_sequentially(typed[25:31], delay=60)
    held.release()

    page.select_option("#id_character", label="Kai")
    held.release()
    page.fill("#id_count", "2")
    page.press("#id_count", "Tab")  # a change event, as a person leaving the field
    prompt.click()
    prompt.press("End")
    prompt.press_sequentially(typed[31:], delay=60)
    held.release()

    # A field filled at once, then a change whose answer comes later: the text stays.
    page.fill("#id_negative", "blurry banners")
    page.select_option("#id_mode", "draft")
    held.release()

    assert prompt.input_value() == typed
    assert page.input_value("#id_negative") == "blurry banners"
    assert page.input_value("#id_count") == "2"
    # The preview did follow: it shows the character chosen and the prompt as typed.
    assert "kaiSky" in page.inner_text("#generate-preview [data-resolved-prompt]")
    assert typed in page.inner_text("#generate-preview [data-resolved-prompt]")

    page.unroute(PREVIEW)
    page.click("#submit-generate")
    page.wait_for_url(re.compile(r"/generate/\?.*submitted="))  # back on the page, its output pane listing the jobs
    jobs = list(Job.objects.filter(project=project).order_by("pk"))
    assert len(jobs) == 2
    for job in jobs:
        assert job.prompt.endswith(typed), job.prompt
        assert job.prompt.count("sunlit") == 1
        assert "blurry banners" in job.negative_prompt
        assert job.mode == "draft" and job.character.name == "Kai"
    assert not page.console_errors  # type: ignore[attr-defined]


def test_a_setting_typed_while_the_mode_switch_is_answered_keeps_its_value(page, producer, stack):  # noqa: F811
    project = make_project(producer, name="Harbour Lights")
    style = project.style
    style.draft_steps, style.production_steps, style.draft_cfg, style.production_cfg = 12, 30, 6.0, 8.0
    style.save()
    template_sync_shipped()

    log_in(page)
    page.goto(f"/generate/?project={project.pk}")
    page.wait_for_selector("#generate-controls")
    held = Held(page)
    page.select_option("#id_mode", "production")  # sent with steps still at the draft default
    steps = page.locator("#id_steps")
    steps.click()
    steps.fill("")
    steps.press_sequentially("40", delay=60)  # typed while the answer is held
    held.release()
    page.wait_for_selector("#generate-controls input[name=cfg][value='8.0']")  # the answer is in
    assert steps.input_value() == "40"  # not the production preset's 30
    assert page.evaluate("document.activeElement && document.activeElement.name") == "steps"
    assert page.input_value("#generate-controls input[name=shown_steps]") == "30"
    assert not page.console_errors  # type: ignore[attr-defined]
