"""/ws/pages/: session-authenticated, only visible groups, HTML fragments from the database."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from generation.events import CHANNEL_MESSAGE_TYPE, job_group, project_group
from generation.models import JobStatus
from tests.factories import AssetFactory, JobFactory, make_project
from tower.page_consumer import render_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    client.get("/login/")  # sets the CSRF cookie as a browser would have it
    cookies = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())
    return cookies.encode()


async def _connect(path: str, user=None) -> WebsocketCommunicator:
    from tower.asgi import application

    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        headers.append((b"cookie", await database_sync_to_async(_session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _send(group: str, event: dict) -> None:
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(group, {"type": CHANNEL_MESSAGE_TYPE, "event": event})


async def _closed_with(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close"
    # The browser's side of the close: the consumer ends and stops reading its channel.
    await communicator.disconnect()
    return message["code"]


async def test_anonymous_socket_is_closed(owner):
    communicator = await _connect("/ws/pages/")
    assert await _closed_with(communicator) == 4401


async def test_outsider_cannot_follow_someone_elses_job(owner, outsider):
    project = await database_sync_to_async(make_project)(owner)
    job = await database_sync_to_async(JobFactory)(project=project)
    communicator = await _connect(f"/ws/pages/?job={job.pk}", outsider)
    assert await _closed_with(communicator) == 4404
    garbage = await _connect("/ws/pages/?job=abc", outsider)
    assert await _closed_with(garbage) == 4404


async def test_job_page_gets_out_of_band_fragments_rendered_from_the_database(owner):
    project = await database_sync_to_async(make_project)(owner)
    job = await database_sync_to_async(JobFactory)(
        project=project, status=JobStatus.RUNNING, progress=0.6, current_node="Grain (#4)", eta_seconds=3
    )
    communicator = await _connect(f"/ws/pages/?job={job.pk}", owner)
    # The event's numbers are stale (0.2); the page shows the row as it is now (60%).
    await _send(
        job_group(job.pk),
        {
            "type": "progress",
            "job": job.pk,
            "project": project.pk,
            "value": 0.2,
            "max": 1,
            "preview": "/media/previews/job-1.jpg",
        },
    )
    html = await communicator.receive_output(timeout=3)
    text = html["text"]
    assert f'id="job-live-{job.pk}" hx-swap-oob="true"' in text
    assert f'id="job-row-{job.pk}"' not in text  # a job page has no job rows (htmx: oobErrorNoTarget)
    assert 'aria-valuenow="60"' in text and "Grain (#4)" in text and "ETA 3 s" in text
    assert 'src="/media/previews/job-1.jpg"' in text
    assert f'id="job-actions-{job.pk}"' not in text  # buttons are swapped only when the job ends
    await communicator.disconnect()


async def test_terminal_event_brings_outputs_and_buttons_with_a_working_csrf_token(owner):
    project = await database_sync_to_async(make_project)(owner)
    job = await database_sync_to_async(JobFactory)(project=project, status=JobStatus.SUCCEEDED, progress=1.0)
    asset = await database_sync_to_async(AssetFactory)(project=project, job=job)
    communicator = await _connect(f"/ws/pages/?job={job.pk}", owner)
    await _send(job_group(job.pk), {"type": "job_complete", "job": job.pk, "project": project.pk, "assets": [asset.pk]})
    text = (await communicator.receive_output(timeout=3))["text"]
    assert f'id="job-outputs-{job.pk}" hx-swap-oob="true"' in text and f'data-asset="{asset.pk}"' in text
    assert 'data-action="reproduce"' in text
    assert 'name="csrfmiddlewaretoken" value=""' not in text
    await communicator.disconnect()


async def test_project_sockets_join_only_visible_projects(owner, outsider):
    mine = await database_sync_to_async(make_project)(owner)
    theirs = await database_sync_to_async(make_project)(outsider, name="Elsewhere")
    job = await database_sync_to_async(JobFactory)(project=theirs, status=JobStatus.QUEUED)
    communicator = await _connect("/ws/pages/?view=jobs", owner)
    await _send(project_group(theirs.pk), {"type": "job_queued", "job": job.pk, "project": theirs.pk})
    assert await communicator.receive_nothing(timeout=0.5)
    own_job = await database_sync_to_async(JobFactory)(project=mine, status=JobStatus.QUEUED)
    await _send(project_group(mine.pk), {"type": "job_queued", "job": own_job.pk, "project": mine.pk})
    text = (await communicator.receive_output(timeout=3))["text"]
    assert 'hx-swap-oob="afterbegin:#live-jobs"' in text and f'id="job-row-{own_job.pk}"' in text
    await communicator.disconnect()


def test_a_forged_event_for_an_invisible_job_renders_nothing(owner, outsider):
    job = JobFactory(project=make_project(owner), status=JobStatus.RUNNING)
    event = {"type": "progress", "job": job.pk, "project": job.project_id}
    assert render_event(user=outsider, event=event, job_page=True, csrf_token="") == ""
    assert f"job-live-{job.pk}" in render_event(user=owner, event=event, job_page=True, csrf_token="")
