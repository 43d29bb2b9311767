"""Job pages' log lines arrive live over /ws/pages/, bounded, and only when a line was added."""

from __future__ import annotations

import re

import pytest
from channels.db import database_sync_to_async

from generation.events import job_group, project_group
from generation.job_views import JOB_LOG_LINES
from generation.models import JobLogLine, JobStatus
from tests.factories import JobFactory, make_project
from tests.tower.test_page_consumer import _connect, _send
from tower.page_consumer import LiveState, render_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


def _log(job, message: str, level: str = "info") -> JobLogLine:
    return JobLogLine.objects.create(job=job, message=message, level=level)


async def test_a_new_log_line_reaches_the_open_job_page(owner):
    project = await database_sync_to_async(make_project)(owner)
    job = await database_sync_to_async(JobFactory)(project=project, status=JobStatus.RUNNING, progress=0.2)
    await database_sync_to_async(_log)(job, "sent to gpu-1")
    communicator = await _connect(f"/ws/pages/?job={job.pk}", owner)
    event = {"type": "progress", "job": job.pk, "project": project.pk, "value": 0.2, "max": 1}

    await _send(job_group(job.pk), event)
    first = (await communicator.receive_output(timeout=3))["text"]
    assert f'id="job-log-{job.pk}"' in first and 'hx-swap-oob="true"' in first and "sent to gpu-1" in first

    # Nothing new in the log: the next progress step does not resend (or re-scroll) it.
    await _send(job_group(job.pk), event)
    second = (await communicator.receive_output(timeout=3))["text"]
    assert f'id="job-live-{job.pk}"' in second and f'id="job-log-{job.pk}"' not in second

    await database_sync_to_async(_log)(job, "output 1 skipped: too large", "warning")
    await _send(job_group(job.pk), event)
    third = (await communicator.receive_output(timeout=3))["text"]
    assert 'class="warning"' in third and "output 1 skipped: too large" in third and "sent to gpu-1" in third
    await communicator.disconnect()


async def test_project_pages_get_no_log(owner):
    project = await database_sync_to_async(make_project)(owner)
    job = await database_sync_to_async(JobFactory)(project=project, status=JobStatus.RUNNING)
    await database_sync_to_async(_log)(job, "sent to gpu-1")
    communicator = await _connect("/ws/pages/?view=dashboard", owner)
    await _send(project_group(project.pk), {"type": "progress", "job": job.pk, "project": project.pk})
    text = (await communicator.receive_output(timeout=3))["text"]
    assert f'id="job-row-{job.pk}"' in text and "job-log-" not in text
    await communicator.disconnect()


def test_the_live_log_is_bounded_to_the_newest_lines(owner, outsider):
    job = JobFactory(project=make_project(owner), status=JobStatus.RUNNING)
    JobLogLine.objects.bulk_create(JobLogLine(job=job, message=f"line {i:04d}") for i in range(JOB_LOG_LINES + 50))
    event = {"type": "progress", "job": job.pk, "project": job.project_id}
    state = LiveState()
    html = render_event(user=owner, event=event, job_page=True, csrf_token="", state=state)
    numbers = [int(n) for n in re.findall(r"line (\d{4})", html)]
    assert numbers == list(range(50, JOB_LOG_LINES + 50))
    assert "job-log-" not in render_event(user=owner, event=event, job_page=True, csrf_token="", state=state)
    # The log is behind the same access check as everything else.
    assert render_event(user=outsider, event=event, job_page=True, csrf_token="", state=LiveState()) == ""
