"""The studio's main pages run under their Content-Security-Policy without a single violation."""

from __future__ import annotations

import pytest

from tests.browser.test_studio import log_in, producer  # noqa: F401 (fixture)
from tests.factories import JobFactory, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

PAGES = ["/", "/projects/", "/characters/", "/generate/", "/jobs/", "/gallery/", "/ingest/", "/api/docs/"]


def test_main_pages_log_no_csp_violation(page, producer):  # noqa: F811
    project = make_project(producer, name="Skyline Academy")
    job = JobFactory(project=project)
    violations: list[str] = []
    page.on(
        "console",
        lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None,
    )
    # Violations also fire an event in the page; the console text is Chromium's wording.
    page.add_init_script(
        "document.addEventListener('securitypolicyviolation', e =>"
        " console.error('Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI));"
    )
    log_in(page)
    for path in [*PAGES, f"/projects/{project.pk}/", f"/jobs/{job.pk}/"]:
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        assert response.headers.get("content-security-policy"), path
        page.wait_for_load_state("networkidle")
    assert violations == []
    assert not page.console_errors  # type: ignore[attr-defined]
    # The API docs' start-up script ran (it is a file now, not inline): Swagger UI drew the page.
    page.goto("/api/docs/")
    page.locator(".swagger-ui .info").wait_for()
