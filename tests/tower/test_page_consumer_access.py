"""/ws/pages/: credentials are re-checked before each event; frames from the browser are ignored."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from generation.events import CHANNEL_MESSAGE_TYPE, job_group
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


async def _connect(headers: list, job_id: int) -> WebsocketCommunicator:
    from tower.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/pages/?job={job_id}", headers=SAME_ORIGIN + headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def _job(owner) -> int:
    project = await database_sync_to_async(make_project)(owner)
    return (await database_sync_to_async(JobFactory)(project=project, status=JobStatus.RUNNING)).pk


async def _progress(job_id: int) -> None:
    from channels.layers import get_channel_layer

    event = {"type": "progress", "job": job_id, "value": 1, "max": 2}
    await get_channel_layer().group_send(job_group(job_id), {"type": CHANNEL_MESSAGE_TYPE, "event": event})


async def _live_panel(communicator: WebsocketCommunicator, job_id: int) -> bool:
    return f'id="job-live-{job_id}"' in (await communicator.receive_output(timeout=3))["text"]


async def _closed_with(communicator: WebsocketCommunicator) -> int:
    message = await communicator.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    await communicator.disconnect()
    return message["code"]


async def test_a_signed_out_page_socket_is_closed_at_the_next_event(owner):
    job_id = await _job(owner)
    client, cookie = await database_sync_to_async(_signed_in)(owner)
    communicator = await _connect([(b"cookie", cookie)], job_id)
    await _progress(job_id)
    assert await _live_panel(communicator, job_id)
    await database_sync_to_async(client.logout)()
    await _progress(job_id)
    assert await _closed_with(communicator) == 4401


async def test_a_page_socket_on_a_revoked_token_is_closed_at_the_next_event(owner, token_for):
    job_id = await _job(owner)
    raw = await database_sync_to_async(token_for)(owner)
    communicator = await _connect([(b"authorization", f"Bearer {raw}".encode())], job_id)
    await _progress(job_id)
    assert await _live_panel(communicator, job_id)
    token = await database_sync_to_async(ApiToken.objects.get)()
    await database_sync_to_async(api_token_revoke)(token=token)
    await _progress(job_id)
    assert await _closed_with(communicator) == 4401


async def test_frames_from_the_browser_are_ignored(owner):
    job_id = await _job(owner)
    _, cookie = await database_sync_to_async(_signed_in)(owner)
    communicator = await _connect([(b"cookie", cookie)], job_id)
    for frame in ({"text_data": "not json\x00"}, {"text_data": "[" * 100_000}, {"bytes_data": b"\x00\xff"}):
        await communicator.send_to(**frame)
    assert await communicator.receive_nothing(timeout=0.3)
    await _progress(job_id)
    assert await _live_panel(communicator, job_id)
    await communicator.disconnect()
