"""An orchestration in real Chromium: started from the character page, its phase cards fill live
as the workers run and gate each phase, and a person approves the next phase."""

from __future__ import annotations

import re

import pytest

from characters.services import character_create
from quality.models import Orchestration
from tests.browser.test_studio import fake, log_in, off_the_loop, producer  # noqa: F401 (fixtures)
from tests.factories import make_project, png_bytes
from tests.generation.engine_helpers import shipped
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

WEIGHTLESS = {"sheet": "weightless-sheet", "loop": "weightless-loop", "video": "weightless-video"}


def test_start_from_the_character_page_and_watch_the_phase_cards_fill(page, producer, fake, stack, tmp_path):  # noqa: F811
    off_the_loop(shipped, "weightless-sheet")
    # No scoring weights here: the project lets gates that cannot be evaluated pass (said on the card).
    project = make_project(producer, advance_unevaluated=True, max_regenerations=0)
    project.phase_templates = WEIGHTLESS  # the card offers the project's templates
    project.save(update_fields=["phase_templates"])
    character = character_create(project=project, name="Kai", design_prompt="1boy, silver hair")
    reference = tmp_path / "kai.png"
    reference.write_bytes(png_bytes(colour=(200, 60, 60)))

    log_in(page)
    page.goto(f"/characters/{character.pk}/")
    # The reference goes through the page: the stack keeps its own media folder.
    page.set_input_files("form[action$='/references/'] input[type=file]", str(reference))
    page.click("button:has-text('Upload reference')")
    page.wait_for_selector("text=Reference added.")
    card = page.locator("#orchestrate")
    card.locator("textarea[name=prompt]").fill("on a windy rooftop")
    card.locator("input[name=auto_advance]").uncheck()  # a person approves each next phase
    card.locator("button:has-text('Start orchestration')").click()

    page.wait_for_url(re.compile(r"/orchestrations/\d+/$"))
    orchestration = Orchestration.objects.get()
    assert page.url.endswith(f"/orchestrations/{orchestration.pk}/")
    page.wait_for_selector("#live-dot.on", timeout=10_000)  # the page socket is connected
    assert page.locator("[data-phase]").count() == 3

    # Phase 1 runs on a worker, is scored and gated; the card fills without a reload.
    page.wait_for_selector('[data-phase="1"][data-phase-status="passed"] [data-asset]', timeout=60_000)
    sheet = page.locator('[data-phase="1"]')
    assert sheet.locator('[data-verdict="not evaluated"]').count() == 1
    assert "passed as not evaluated" in sheet.inner_text()
    assert sheet.locator("[data-best-asset]").count() == 1
    page.wait_for_selector('[data-phase="2"][data-phase-status="awaiting_approval"]')
    assert page.locator("[data-orchestration-status]").inner_text() == "Waiting for approval"

    page.click("button[data-action=advance]")

    page.wait_for_selector('[data-phase="2"][data-phase-status="passed"] [data-asset]', timeout=60_000)
    wait_until(
        lambda: Orchestration.objects.get().phase_runs.get(phase=2).status == "passed", timeout=5, what="phase 2 passed"
    )
    loop = page.locator('[data-phase="2"]')
    assert "Starts from" in loop.inner_text()
    page.wait_for_selector('[data-phase="3"][data-phase-status="awaiting_approval"]')
