"""A producer's day in real Chromium: log in, create a project and a character, generate and
watch it finish live, cancel a running job, read a runtime error with its node."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password

from generation.models import Job, JobStatus
from tests.browser.conftest import screenshot
from tests.factories import png_bytes
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, shipped
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PASSWORD = "storyboards-at-dawn-42"


@pytest.fixture
def producer(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    return get_user_model().objects.create(username="producer", password=make_password(PASSWORD))


@pytest.fixture
def fake(tmp_path):
    with FakeComfy(root=tmp_path / "comfy", checkpoints=["anime_v1.safetensors"]) as server:
        off_the_loop(backend_for, server)
        shipped("weightless-image")
        yield server


def off_the_loop(fn, *args):
    """Run ``fn`` in a worker thread: Playwright's loop is running in this one, and the engine's
    client code starts loops of its own."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def call():
        try:
            return fn(*args)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()


def log_in(page) -> None:
    page.goto("/login/")
    page.fill("#id_username", "producer")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def create_project_and_character(page, tmp_path) -> tuple[int, int]:
    page.click("nav >> text=Projects")
    page.click("text=New project")
    page.fill("#id_name", "Skyline Academy")
    page.fill("#id_description", "A school on a floating island; slice of life with sky pirates.")
    page.click("button:has-text('Create project')")
    page.wait_for_selector("text=Project “Skyline Academy” created.")
    project_id = int(re.search(r"/projects/(\d+)/", page.url)[1])
    # Small images keep the fake quick; this also proves the style form saves.
    page.fill("#style-card #id_width", "128")
    page.fill("#style-card #id_height", "128")
    page.fill("#style-card #id_draft_steps", "12")
    page.click("button:has-text('Save style')")
    page.wait_for_selector("text=Generation style saved.")
    page.fill("#bible-card #id_premise", "Kai learns to fly the school's oldest glider.")
    page.click("button:has-text('Save story bible')")
    page.wait_for_selector("text=Story bible saved.")

    page.click("a:has-text('Add')")
    page.fill("#id_name", "Kai")
    page.fill("#id_design_prompt", "1boy, silver hair, amber eyes, navy school uniform")
    page.fill("#id_trigger_word", "kaiSky")
    page.select_option("#id_attr-0-type", "hair")
    page.fill("#id_attr-0-value", "silver, short")
    page.select_option("#id_attr-1-type", "eyes")
    page.fill("#id_attr-1-value", "amber")
    page.click("button:has-text('Create character')")
    page.wait_for_selector("text=Character “Kai” created.")
    character_id = int(re.search(r"/characters/(\d+)/", page.url)[1])
    reference = tmp_path / "kai.png"
    reference.write_bytes(png_bytes(96, 128, (180, 190, 210)))
    page.set_input_files("#id_image", str(reference))
    page.click("button:has-text('Upload reference')")
    page.wait_for_selector("text=Reference added.")
    page.wait_for_selector(".swatch")
    page.wait_for_selector("[data-resolved-prompt]:has-text('kaiSky')")
    return project_id, character_id


def generate(page, project_id: int, character_id: int, *, seed: int) -> int:
    page.goto(f"/generate/?project={project_id}&character={character_id}")
    page.select_option("#id_template", label="Weightless image (test pattern)")
    page.wait_for_selector("[data-preflight=ok]")
    page.fill("#id_seed", str(seed))
    page.click("#submit-generate")
    page.wait_for_url(re.compile(r"/generate/\?.*submitted=\d+"))  # the Generate page's output pane
    job_id = int(re.search(r"submitted=(\d+)", page.url)[1])
    page.click(f"#generate-output #job-row-{job_id} a")
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    return job_id


def badge(page, job_id: int) -> str:
    return page.inner_text(f"#job-live-{job_id} [data-status]")


def test_generate_and_watch_it_finish_live(page, producer, fake, tmp_path, stack):
    # Nodes slower than the engine's progress-write interval (0.25 s), then one held: the bar
    # has real steps to show before it waits.
    fake.configure(holds={"ImageAddNoise"}, delays={"EmptyImage": 0.4, "ImageBlend": 0.4})
    log_in(page)
    screenshot(page, "01-dashboard-empty")
    project_id, character_id = create_project_and_character(page, tmp_path)
    screenshot(page, "03-character")
    page.goto(f"/projects/{project_id}/")
    screenshot(page, "02-project")

    page.goto(f"/generate/?project={project_id}&character={character_id}")
    page.select_option("#id_template", label="Weightless image (test pattern)")
    page.wait_for_selector("[data-preflight=ok]")
    assert "kaiSky" in page.inner_text("#generate-preview [data-resolved-prompt]")
    screenshot(page, "04-generate")
    page.fill("#id_seed", "4242")
    page.click("#submit-generate")
    page.wait_for_url(re.compile(r"/generate/\?.*submitted=\d+"))  # the Generate page's output pane
    job_id = int(re.search(r"submitted=(\d+)", page.url)[1])
    page.click(f"#generate-output #job-row-{job_id} a")
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.evaluate("window.__sameDocument = true")

    # The worker picks it up and the held node keeps it running: the page follows by itself.
    page.wait_for_selector(f"#job-live-{job_id} [data-status]:has-text('Running')", timeout=30_000)
    wait_until(lambda: fake.held_nodes(), timeout=15, what="the fake to hold the grain node")
    progress = f"#job-live-{job_id} [data-job-progress]"
    # Polled from here: the page's Content-Security-Policy forbids Playwright's eval-based wait_for_function.
    wait_until(lambda: int(page.get_attribute(progress, "aria-valuenow") or 0) > 0, timeout=30, what="progress")
    midway = int(page.get_attribute(f"#job-live-{job_id} [data-job-progress]", "aria-valuenow"))
    assert 0 < midway < 100
    assert "Grain" in page.inner_text(f"#job-live-{job_id}")
    screenshot(page, "05-job-running")

    fake.release()
    page.wait_for_selector(f"#job-live-{job_id} [data-status]:has-text('Succeeded')", timeout=30_000)
    page.wait_for_selector(f"#job-outputs-{job_id} img", timeout=15_000)
    assert page.get_attribute(f"#job-live-{job_id} [data-job-progress]", "aria-valuenow") == "100"
    assert page.evaluate("window.__sameDocument === true")  # no reload happened
    # The thumbnail really loads (made once, served through the access-checked media view).
    thumb = f"#job-outputs-{job_id} img"
    wait_until(lambda: page.eval_on_selector(thumb, "img => img.naturalWidth") > 0, timeout=15, what="thumbnail")
    assert Job.objects.get(pk=job_id).status == JobStatus.SUCCEEDED
    screenshot(page, "06-job-done")

    page.goto("/")
    page.wait_for_selector("#recent-outputs .tile img")
    screenshot(page, "07-dashboard")
    page.goto("/gallery/")
    page.wait_for_selector(".tile img")
    page.click(".tile")
    page.wait_for_selector("#lightbox[open] .media")
    screenshot(page, "08-gallery-lightbox")
    page.click("[data-close-lightbox]")
    page.goto("/jobs/")
    screenshot(page, "09-jobs-820", width=820)
    page.goto(f"/characters/{character_id}/")
    screenshot(page, "10-character-820", width=820)
    assert not page.console_errors  # type: ignore[attr-defined]


def test_cancel_a_running_job_and_see_a_runtime_error_with_its_node(page, producer, fake, tmp_path, stack):
    log_in(page)
    project_id, character_id = create_project_and_character(page, tmp_path)

    fake.configure(holds={"ImageAddNoise"})
    job_id = generate(page, project_id, character_id, seed=7)
    page.wait_for_selector(f"#job-live-{job_id} [data-status]:has-text('Running')", timeout=30_000)
    with page.expect_navigation():
        page.click(f"#job-actions-{job_id} [data-action=cancel]")
    page.wait_for_selector(f"#job-live-{job_id} [data-status]:has-text('Cancelled')")
    page.wait_for_selector(f"#job-actions-{job_id} [data-action=retry]")
    assert Job.objects.get(pk=job_id).status == JobStatus.CANCELLED
    # The worker asks ComfyUI to interrupt the prompt (the fake notes it; its held node then ends).
    wait_until(lambda: fake.server.state.interrupted, timeout=20, what=f"the interrupt ({stack.log('qcluster')})")
    fake.release()
    screenshot(page, "11-job-cancelled")

    fake.configure(holds=set(), failures={"ImageAddNoise": ("RuntimeError", "CUDA out of memory (fake)")})
    job_id = generate(page, project_id, character_id, seed=8)
    page.evaluate("window.__sameDocument = true")
    page.wait_for_selector(f"#job-live-{job_id} [data-status]:has-text('Failed')", timeout=30_000)
    error = page.inner_text(f"#job-live-{job_id} [data-error]")
    assert "CUDA out of memory (fake)" in error
    assert "ImageAddNoise" in page.inner_text(f"#job-live-{job_id} [data-error-node]")
    assert page.evaluate("window.__sameDocument === true")
    screenshot(page, "12-job-failed")
    assert not page.console_errors  # type: ignore[attr-defined]
