"""/ws/pages/: credentials are re-checked before each event; frames from the browser are ignored."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from generation.events import CHANNEL_MESSAGE_TYPE, project_group
from generation.models import JobStatus
from tests.factories import JobFactory, make_project
from tower.api_v1 import api_token_revoke
from tower.models import ApiToken

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

SAME_ORIGIN = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


def _signed_in(user) -> tuple[Client, bytes]:
    client = Client()
    client.force_login(user)
    return client, "; ".join(f"{k}={v.value}" for k, v in client.cookies.items()).encode()


async def _connect(headers: list) -> WebsocketCommunicator:
    from tower.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/pages/", headers=SAME_ORIGIN + headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def _queued(project) -> int:
    from channels.layers import get_channel_layer

    job = await database_sync_to_async(JobFactory)(project=project, status=JobStatus.QUEUED)
    event = {"type": "job_queued", "job": job.pk, "project": project.pk}
    await get_channel_layer().group_send(project_group(project.pk), {"type": CHANNEL_MESSAGE_TYPE, "event": event})
    return job.pk


async def _closed_with(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect()
    return message["code"]


async def test_a_signed_out_page_socket_is_closed_at_the_next_event(owner):
    project = await database_sync_to_async(make_project)(owner)
    client, cookie = await database_sync_to_async(_signed_in)(owner)
    communicator = await _connect([(b"cookie", cookie)])
    job_id = await _queued(project)
    assert f'id="job-row-{job_id}"' in (await communicator.receive_output(timeout=3))["text"]
    await database_sync_to_async(client.logout)()
    await _queued(project)
    assert await _closed_with(communicator) == 4401


async def test_a_page_socket_on_a_revoked_token_is_closed_at_the_next_event(owner, token_for):
    project = await database_sync_to_async(make_project)(owner)
    raw = await database_sync_to_async(token_for)(owner)
    communicator = await _connect([(b"authorization", f"Bearer {raw}".encode())])
    job_id = await _queued(project)
    assert f'id="job-row-{job_id}"' in (await communicator.receive_output(timeout=3))["text"]
    token = await database_sync_to_async(ApiToken.objects.get)()
    await database_sync_to_async(api_token_revoke)(token=token)
    await _queued(project)
    assert await _closed_with(communicator) == 4401


async def test_frames_from_the_browser_are_ignored(owner):
    project = await database_sync_to_async(make_project)(owner)
    _, cookie = await database_sync_to_async(_signed_in)(owner)
    communicator = await _connect([(b"cookie", cookie)])
    for frame in ({"text_data": "not json\x00"}, {"text_data": "[" * 100_000}, {"bytes_data": b"\x00\xff"}):
        await communicator.send_to(**frame)
    assert await communicator.receive_nothing(timeout=0.3)
    job_id = await _queued(project)
    assert f'id="job-row-{job_id}"' in (await communicator.receive_output(timeout=3))["text"]
    await communicator.disconnect()
