"""Live pages agree with the database: the dashboard's "Running and queued" section, its GPU
counts and recent outputs, the job list's rows; and every fragment a socket sends has its target
on the page that socket belongs to (htmx reports ``oobErrorNoTarget`` otherwise)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from generation.models import JobStatus
from tests.factories import AssetFactory, BackendFactory, JobFactory, make_project
from tower.page_consumer import LiveState, live_state_for, render_event

pytestmark = pytest.mark.django_db


def _page(user, url: str) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def _targets(fragment: str) -> list[str]:
    """The ids a socket message swaps: ``id="x" hx-swap-oob="true"`` and ``hx-swap-oob="…:#x"``."""
    ids = re.findall(r'<\w+ id="([\w-]+)"[^>]*hx-swap-oob="true"', fragment)
    return ids + re.findall(r'hx-swap-oob="\w+:#([\w-]+)"', fragment)


def _event(kind: str, job) -> dict:
    return {"type": kind, "job": job.pk, "project": job.project_id}


def _dashboard_event(owner, state: LiveState, kind: str, job) -> str:
    return render_event(user=owner, event=_event(kind, job), csrf_token="", state=state)


def test_the_running_section_follows_jobs_in_and_out_and_counts_them_on_the_gpu(owner):
    project = make_project(owner)
    backend = BackendFactory(name="gpu-1", healthy=True)
    state = live_state_for(user=owner, view="dashboard", params={})
    assert "Nothing running" in _page(owner, reverse("dashboard"))

    job = JobFactory(project=project, status=JobStatus.QUEUED)
    html = _dashboard_event(owner, state, "job_queued", job)
    assert f'id="job-row-{job.pk}"' in html and "Nothing running" not in html

    JobFactory._meta.model.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, backend=backend, progress=0.5)
    html = _dashboard_event(owner, state, "progress", job)
    assert 'id="dashboard-backends" hx-swap-oob="true"' in html
    assert re.search(r"data-on-gpu>1 on GPU", html), html  # was "0 on GPU" during a run
    again = _dashboard_event(owner, state, "progress", job)  # same status: only the row's progress
    assert _targets(again) == [f"job-row-{job.pk}"]

    JobFactory._meta.model.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, progress=1.0)
    AssetFactory(project=project, job=job)
    html = _dashboard_event(owner, state, "job_complete", job)
    assert f'id="job-row-{job.pk}"' not in html  # the finished job leaves the running list
    assert "Nothing running" in html and re.search(r"data-on-gpu>0 on GPU", html)
    assert 'id="dashboard-recent" hx-swap-oob="true"' in html and "Outputs appear here" not in html


def test_the_running_section_shows_jobs_on_a_gpu_before_the_queue(owner):
    project = make_project(owner)
    running = JobFactory(project=project, status=JobStatus.RUNNING)
    queued = [JobFactory(project=project, status=JobStatus.QUEUED) for _ in range(25)]
    html = _page(owner, reverse("dashboard"))
    rows = [int(pk) for pk in re.findall(r'id="job-row-(\d+)"', html)]
    assert rows[0] == running.pk and rows[1:] == [job.pk for job in queued[:19]]


def test_every_fragment_has_its_target_on_the_page_it_is_sent_to(owner):
    project = make_project(owner)
    listed = JobFactory(project=project, status=JobStatus.RUNNING)
    events = [_event(kind, listed) for kind in ("progress", "job_complete", "quality_evaluation")]

    job_page = _page(owner, reverse("job-detail", args=[listed.pk]))
    for event in events:
        html = render_event(user=owner, event=event, job_page=True, csrf_token="", state=LiveState())
        assert html and all(f'id="{target}"' in job_page for target in _targets(html)), html

    dashboard = _page(owner, reverse("dashboard"))
    state = live_state_for(user=owner, view="dashboard", params={})
    html = render_event(user=owner, event=events[0], csrf_token="", state=state)
    assert html and all(f'id="{target}"' in dashboard for target in _targets(html))

    # The job list's second page: an event for a job on the first page is not sent there.
    for _ in range(30):
        JobFactory(project=project, status=JobStatus.QUEUED)
    second = _page(owner, reverse("job-list") + "?page=2")
    assert 'ws-connect="/ws/pages/?view=jobs&amp;page=2"' in second
    state = live_state_for(user=owner, view="jobs", params={"page": "2"})
    newest = JobFactory(project=project, status=JobStatus.QUEUED)
    assert render_event(user=owner, event=_event("job_queued", newest), csrf_token="", state=state) == ""
    html = render_event(user=owner, event=_event("progress", listed), csrf_token="", state=state)
    assert _targets(html) == [f"job-row-{listed.pk}"] and f'id="job-row-{listed.pk}"' in second

    # Pages with nothing live on them get nothing.
    assert render_event(user=owner, event=events[0], csrf_token="", state=LiveState()) == ""


def test_a_new_job_on_an_empty_job_list_replaces_the_empty_row(owner):
    project = make_project(owner)
    page = _page(owner, reverse("job-list"))
    assert 'id="live-jobs-empty"' in page and 'id="live-jobs"' in page
    state = live_state_for(user=owner, view="jobs", params={})
    job = JobFactory(project=project, status=JobStatus.QUEUED)
    html = render_event(user=owner, event=_event("job_queued", job), csrf_token="", state=state)
    assert 'hx-swap-oob="afterbegin:#live-jobs"' in html
    # A body of its own: a lone <tr> after the new row's <tbody> would parse into a nameless <tbody>.
    assert '<tbody id="live-jobs-empty" hx-swap-oob="true" hidden>' in html
    again = JobFactory(project=project, status=JobStatus.QUEUED)
    html = render_event(user=owner, event=_event("job_queued", again), csrf_token="", state=state)
    assert "live-jobs-empty" not in html
