"""'the template does not use: fps' was logged on every job of an image template: the style's own
fields are not parameters the request asked for. Only an explicit request the template cannot take
is logged (on the job it concerns)."""

from __future__ import annotations

import pytest

from generation.models import JobLogLine
from generation.services.submit import jobs_create
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    from generation import tasks

    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)


def test_a_plain_request_logs_nothing_about_unused_style_fields(owner, project):
    project.style.fps = 10
    project.style.save()
    jobs = jobs_create(user=owner, project=project, template=shipped("weightless-image"), count=3)
    assert not JobLogLine.objects.filter(job__in=jobs, message__contains="does not use").exists()


def test_an_explicit_parameter_the_template_lacks_is_logged(owner, project):
    jobs = jobs_create(user=owner, project=project, template=shipped("weightless-image"), overrides={"fps": 12})
    assert JobLogLine.objects.filter(job__in=jobs, message="the template does not use: fps").count() == 1
