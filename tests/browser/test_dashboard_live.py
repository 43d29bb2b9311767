"""The dashboard in real Chromium while a job runs on the fake ComfyUI: the running section, its
empty message and the GPU count follow the job in and out without a reload, and no htmx error
(``oobErrorNoTarget``: a fragment sent to a page without its target) reaches the console on the
dashboard, the job list or the job page."""

from __future__ import annotations

import re

import pytest

from generation.models import Job, JobStatus
from tests.browser.conftest import screenshot
from tests.browser.test_studio import fake, log_in, off_the_loop, producer  # noqa: F401 (fixtures)
from tests.factories import CharacterFactory, make_project
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

ON_GPU = "document.querySelector('#dashboard-backends [data-on-gpu]').textContent.startsWith('%d on GPU')"


def console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


def test_the_dashboard_follows_a_job_in_and_out(page, producer, fake, stack, settings):  # noqa: F811
    settings.MEDIA_ROOT = stack.logs / "media"
    project = make_project(producer, name="Skyline Academy")
    project.style.width = project.style.height = 128
    project.style.save()
    CharacterFactory(project=project, name="Kai")
    fake.configure(holds={"ImageAddNoise"})
    log_in(page)
    dashboard_errors = console_errors(page)
    page.goto("/")
    page.wait_for_selector("#live-dot.on")
    assert "Nothing running" in page.inner_text("#dashboard-active")
    assert "0 on GPU" in page.inner_text("#dashboard-backends")

    # A second tab generates (and then watches the job), a third lists the jobs.
    generator = page.context.new_page()
    generator_errors = console_errors(generator)
    jobs_page = page.context.new_page()
    jobs_errors = console_errors(jobs_page)
    jobs_page.goto("/jobs/")
    jobs_page.wait_for_selector("#live-dot.on")
    generator.goto(f"/generate/?project={project.pk}")
    generator.select_option("#id_template", label="Weightless image (test pattern)")
    generator.wait_for_selector("[data-preflight=ok]")
    generator.click("#submit-generate")
    generator.wait_for_url(re.compile(r"/generate/\?.*submitted=\d+"))  # its output pane follows the job
    job_id = int(re.search(r"submitted=(\d+)", generator.url)[1])

    row = f"#dashboard-active #job-row-{job_id}"
    page.wait_for_selector(f"{row} [data-status]:has-text('Running')", timeout=30_000)
    assert "Nothing running" not in page.inner_text("#dashboard-active")
    on_gpu = "#dashboard-backends [data-on-gpu]"
    wait_until(lambda: page.inner_text(on_gpu).startswith("1 on GPU"), timeout=30, what="1 on GPU")
    jobs_page.wait_for_selector(f"#job-row-{job_id} [data-status]:has-text('Running')")
    screenshot(page, "20-dashboard-running")

    wait_until(lambda: fake.held_nodes(), timeout=15, what="the fake to hold the grain node")
    fake.release()
    page.wait_for_selector(row, state="detached", timeout=30_000)  # the finished job leaves the list
    page.wait_for_selector("#dashboard-active :text('Nothing running')")
    on_gpu = "#dashboard-backends [data-on-gpu]"
    wait_until(lambda: page.inner_text(on_gpu).startswith("0 on GPU"), timeout=30, what="0 on GPU")
    page.wait_for_selector("#recent-outputs .tile")
    generator.wait_for_selector(f"#generate-output #job-row-{job_id} [data-status]:has-text('Succeeded')")
    jobs_page.wait_for_selector(f"#job-row-{job_id} [data-status]:has-text('Succeeded')")
    assert off_the_loop(lambda: Job.objects.get(pk=job_id).status) == JobStatus.SUCCEEDED
    screenshot(page, "21-dashboard-done")

    # No page the job's events reached got a fragment without its target.
    for name, errors in (("dashboard", dashboard_errors), ("generate", generator_errors), ("jobs", jobs_errors)):
        assert not [e for e in errors if "htmx" in e or "oob" in e.lower()], (name, errors)
    assert not page.console_errors  # type: ignore[attr-defined]
