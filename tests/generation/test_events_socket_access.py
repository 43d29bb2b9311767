"""/ws/v1/events/: token sockets need no Origin, access is re-checked per event, bad frames get an answer."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from generation import events
from projects.services import project_member_remove
from tests.factories import JobFactory, make_project
from tower.api_v1 import api_token_revoke
from tower.asgi import application
from tower.models import ApiToken, hash_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

CONNECT_TIMEOUT = 5
HOST = [(b"host", b"localhost")]
SAME_ORIGIN = [(b"origin", b"http://localhost")]
FOREIGN_ORIGIN = [(b"origin", b"https://evil.example")]


def _bearer(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {token}".encode())]


def _signed_in(user) -> tuple[Client, list[tuple[bytes, bytes]]]:
    client = Client()
    client.force_login(user)
    cookie = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items())
    return client, [(b"cookie", cookie.encode())]


async def _open(headers: list, path: str = "/ws/v1/events/", subprotocols: list | None = None):
    comm = WebsocketCommunicator(application, path, headers=HOST + headers, subprotocols=subprotocols)
    connected, _ = await comm.connect(timeout=CONNECT_TIMEOUT)
    return comm, connected


async def _subscribed(headers: list, path: str = "/ws/v1/events/") -> WebsocketCommunicator:
    comm, connected = await _open(headers, path)
    assert connected
    assert (await comm.receive_json_from(timeout=3))["type"] == "subscribed"
    return comm


async def _closed_with(comm: WebsocketCommunicator) -> int:
    message = await comm.receive_output(timeout=3)
    assert message["type"] == "websocket.close", message
    await comm.disconnect()
    return message["code"]


def _queued(job) -> None:
    events.job_event("job_queued", job_id=job.pk, project_id=job.project_id, position=1)


@pytest.fixture
def world(channel_layer, owner, member, outsider, token_for):
    from projects.services import project_member_set

    project = make_project(owner, name="Shared")
    project_member_set(project=project, username=member.username, role="viewer")
    other = make_project(member, name="Own")
    return {
        "project": project,
        "job": JobFactory(project=project),
        "other_job": JobFactory(project=other),
        "member": member,
        "member_token": token_for(member),
        "owner": owner,
    }


# --- Origin: needed by cookie sockets, not by token sockets ----------------------------------------


async def test_a_token_socket_without_origin_is_accepted_and_gets_events(world):
    comm = await _subscribed(_bearer(world["member_token"]))
    await sync_to_async(_queued)(world["job"])
    event = await comm.receive_json_from(timeout=3)
    assert (event["type"], event["job"]) == ("job_queued", world["job"].pk)
    await comm.disconnect()


async def test_a_token_socket_with_any_origin_is_accepted(world):
    comm = await _subscribed(_bearer(world["member_token"]) + FOREIGN_ORIGIN)
    await comm.disconnect()


async def test_a_cookie_socket_needs_the_sites_own_origin(world):
    _, cookie = await database_sync_to_async(_signed_in)(world["member"])
    comm = await _subscribed(cookie + SAME_ORIGIN)
    await comm.disconnect()
    for origin in (FOREIGN_ORIGIN, []):
        comm, connected = await _open(cookie + origin)
        assert not connected  # refused at the handshake (403)
        await comm.disconnect()


async def test_a_bad_token_never_falls_back_to_the_cookie(world):
    """Without an Origin check, a foreign page could otherwise pair junk credentials with the cookie."""
    _, cookie = await database_sync_to_async(_signed_in)(world["member"])
    for extra in (_bearer("twr_not-a-real-token"), []):
        comm, connected = await _open(
            cookie + FOREIGN_ORIGIN + extra, subprotocols=None if extra else ["bearer.twr_not-a-real-token"]
        )
        assert connected
        assert await _closed_with(comm) == 4401


# --- Access is re-checked before each event --------------------------------------------------------


async def test_a_revoked_token_closes_the_socket_at_the_next_event(world):
    comm = await _subscribed(_bearer(world["member_token"]))
    token = await database_sync_to_async(ApiToken.objects.get)(key_hash=hash_token(world["member_token"]))
    await database_sync_to_async(api_token_revoke)(token=token)
    await sync_to_async(_queued)(world["job"])
    assert await _closed_with(comm) == 4401


async def test_a_deactivated_user_is_closed_at_the_next_event(world):
    comm = await _subscribed(_bearer(world["member_token"]))
    member = world["member"]
    member.is_active = False
    await database_sync_to_async(member.save)(update_fields=["is_active"])
    await sync_to_async(_queued)(world["job"])
    assert await _closed_with(comm) == 4401


async def test_a_signed_out_session_closes_the_socket_at_the_next_event(world):
    client, cookie = await database_sync_to_async(_signed_in)(world["member"])
    comm = await _subscribed(cookie + SAME_ORIGIN)
    await sync_to_async(_queued)(world["job"])
    assert (await comm.receive_json_from(timeout=3))["type"] == "job_queued"
    await database_sync_to_async(client.logout)()
    await sync_to_async(_queued)(world["job"])
    assert await _closed_with(comm) == 4401


async def test_a_password_change_closes_the_other_sessions_sockets(world):
    _, cookie = await database_sync_to_async(_signed_in)(world["member"])
    comm = await _subscribed(cookie + SAME_ORIGIN)
    member = world["member"]
    member.set_password("a new password, elsewhere")
    await database_sync_to_async(member.save)(update_fields=["password"])
    await sync_to_async(_queued)(world["job"])
    assert await _closed_with(comm) == 4401


async def test_a_removed_member_stops_getting_that_project_but_keeps_their_own(world):
    comm = await _subscribed(_bearer(world["member_token"]))
    await database_sync_to_async(project_member_remove)(project=world["project"], user_id=world["member"].pk)
    await sync_to_async(_queued)(world["job"])
    await sync_to_async(_queued)(world["other_job"])
    event = await comm.receive_json_from(timeout=3)
    assert (event["type"], event["job"]) == ("job_queued", world["other_job"].pk)
    await sync_to_async(_queued)(world["job"])
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


@pytest.mark.parametrize("follow", ["project", "job"])
async def test_a_removed_member_following_one_project_or_job_is_closed(world, follow):
    target = world["project"].pk if follow == "project" else world["job"].pk
    comm = await _subscribed(_bearer(world["member_token"]), f"/ws/v1/events/?{follow}={target}")
    await database_sync_to_async(project_member_remove)(project=world["project"], user_id=world["member"].pk)
    await sync_to_async(_queued)(world["job"])
    assert await _closed_with(comm) == 4404


# --- Frames from the client ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"text_data": "not json"},
        {"text_data": "\x00"},
        {"text_data": '{"type": "ping"\x00}'},
        {"text_data": "[" * 3000 + "]" * 3000},
        {"text_data": "[" * 100_000},
        {"text_data": json.dumps({"type": "x" * 10_000})},
        {"text_data": "[1, 2]"},
        {"text_data": '{"type": "subscribe", "project": 1}'},
        {"bytes_data": b"\x00\x01binary"},
    ],
    ids=["text", "nul", "nul-in-json", "deep", "unclosed-deep", "huge", "array", "unknown-type", "binary"],
)
async def test_a_malformed_frame_is_answered_and_the_socket_keeps_working(world, frame):
    comm = await _subscribed(_bearer(world["member_token"]))
    await comm.send_to(**frame)
    answer = await comm.receive_json_from(timeout=3)
    assert answer["type"] == "error" and "ping" in answer["error"]
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_json_from(timeout=3) == {"type": "pong"}
    await sync_to_async(_queued)(world["job"])
    assert (await comm.receive_json_from(timeout=3))["type"] == "job_queued"
    await comm.disconnect()
