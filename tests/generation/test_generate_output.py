"""The Generate page's output pane over the page socket (``view=generate``): the jobs of the last
submission get their rows and, when they end, their outputs; nobody else's jobs, nothing else."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from generation.events import CHANNEL_MESSAGE_TYPE, project_group
from generation.models import JobStatus
from tests.factories import AssetFactory, JobFactory, make_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]


def _session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    client.get("/login/")
    return "; ".join(f"{k}={v.value}" for k, v in client.cookies.items()).encode()


async def _connect(path: str, user) -> WebsocketCommunicator:
    from tower.asgi import application

    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    headers.append((b"cookie", await database_sync_to_async(_session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _send(group: str, event: dict) -> None:
    from channels.layers import get_channel_layer

    await get_channel_layer().group_send(group, {"type": CHANNEL_MESSAGE_TYPE, "event": event})


def _world(owner):
    project = make_project(owner)
    mine = JobFactory(project=project, created_by=owner, status=JobStatus.RUNNING)
    other = JobFactory(project=project, created_by=owner, status=JobStatus.RUNNING)
    return project, mine, other


async def test_the_pane_follows_its_jobs_to_their_outputs(owner):
    project, mine, other = await database_sync_to_async(_world)(owner)
    communicator = await _connect(f"/ws/pages/?view=generate&submitted={mine.pk}", owner)
    group = project_group(project.pk)

    await _send(group, {"type": "progress", "job": other.pk})  # not in this pane: nothing
    await _send(group, {"type": "progress", "job": mine.pk})
    html = await communicator.receive_from(timeout=3)
    assert f'id="job-row-{mine.pk}" hx-swap-oob="true"' in html and f"job-outputs-{mine.pk}" not in html

    def finish():
        JobFactory._meta.model.objects.filter(pk=mine.pk).update(status=JobStatus.SUCCEEDED)
        return AssetFactory(project=project, job=mine)

    asset = await database_sync_to_async(finish)()
    await _send(group, {"type": "job_complete", "job": mine.pk})
    html = await communicator.receive_from(timeout=3)
    assert f'id="job-outputs-{mine.pk}" hx-swap-oob="true"' in html and f'data-asset="{asset.pk}"' in html
    assert "Succeeded" in html
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect()


async def test_an_outsider_pane_of_someone_elses_jobs_gets_nothing(owner, outsider):
    project, mine, _ = await database_sync_to_async(_world)(owner)
    communicator = await _connect(f"/ws/pages/?view=generate&submitted={mine.pk}", outsider)
    await _send(project_group(project.pk), {"type": "job_complete", "job": mine.pk})
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
