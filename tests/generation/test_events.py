from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import transaction

from generation import events
from tests.factories import JobFactory, make_project
from tower.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
# The communicator's default is 1 s: a first connect that opens PostgreSQL and Redis connections
# on a loaded 2-core CI machine took longer once (the socket was accepted all the same).
CONNECT_TIMEOUT = 5


def _communicator(path: str, headers: list | None = None, subprotocols: list | None = None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=ORIGIN + (headers or []), subprotocols=subprotocols)


async def _connect_as(token: str, path: str = "/ws/v1/events/") -> WebsocketCommunicator:
    comm = _communicator(path, headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, _ = await comm.connect(timeout=CONNECT_TIMEOUT)
    assert connected
    return comm


@pytest.fixture
def setup(channel_layer, owner, outsider, token_for):
    project = make_project(owner)
    job = JobFactory(project=project)
    return {
        "project": project,
        "job": job,
        "owner_token": token_for(owner),
        "outsider_token": token_for(outsider),
    }


async def test_a_member_receives_a_job_event_sent_after_commit(setup):
    comm = await _connect_as(setup["owner_token"])
    assert (await comm.receive_json_from())["type"] == "subscribed"
    job = setup["job"]

    def send_in_transaction() -> None:
        with transaction.atomic():
            events.job_event("job_queued", job_id=job.pk, project_id=job.project_id, position=1)
            # Nothing is sent before the commit.
            assert transaction.get_connection().run_on_commit

    await sync_to_async(send_in_transaction)()
    event = await comm.receive_json_from(timeout=3)
    assert (event["type"], event["job"], event["position"]) == ("job_queued", job.pk, 1)
    await comm.disconnect()


async def test_a_socket_following_everything_gets_its_own_jobs_events_once(setup, owner):
    """The socket is in the user's group and the project's; the event goes to both (and the job's)."""
    comm = await _connect_as(setup["owner_token"])
    assert (await comm.receive_json_from())["type"] == "subscribed"
    job = setup["job"]

    for kind in ("job_queued", "job_complete"):
        await sync_to_async(events.job_event)(kind, job_id=job.pk, project_id=job.project_id, user_id=owner.pk)

    assert [(await comm.receive_json_from(timeout=3))["type"] for _ in range(2)] == ["job_queued", "job_complete"]
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()


async def test_a_socket_quiet_for_longer_than_the_layers_wait_still_gets_the_next_event(setup):
    """The consumer waits on Redis 5 s at a time; a quiet spell of 6.5 s must not cost the socket."""
    import asyncio

    comm = await _connect_as(setup["owner_token"])
    assert (await comm.receive_json_from())["type"] == "subscribed"
    await asyncio.sleep(6.5)
    job = setup["job"]

    await sync_to_async(events.job_event)("job_queued", job_id=job.pk, project_id=job.project_id, position=2)

    event = await comm.receive_json_from(timeout=3)
    assert (event["type"], event["job"], event["position"]) == ("job_queued", job.pk, 2)
    await comm.disconnect()


async def test_an_event_in_a_rolled_back_transaction_is_never_sent(setup):
    comm = await _connect_as(setup["owner_token"], f"/ws/v1/events/?job={setup['job'].pk}")
    await comm.receive_json_from()
    job = setup["job"]

    def send_then_roll_back() -> None:
        try:
            with transaction.atomic():
                events.job_event("job_failed", job_id=job.pk, project_id=job.project_id)
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        events.job_event("job_complete", job_id=job.pk, project_id=job.project_id)

    await sync_to_async(send_then_roll_back)()
    event = await comm.receive_json_from(timeout=3)
    assert event["type"] == "job_complete"
    assert await comm.receive_nothing(timeout=0.3)
    await comm.disconnect()


async def test_an_outsider_gets_nothing_and_cannot_subscribe_to_the_job(setup):
    comm = await _connect_as(setup["outsider_token"])
    assert (await comm.receive_json_from())["groups"] == 1  # only their own user group
    job = setup["job"]
    await sync_to_async(events.job_event)("job_queued", job_id=job.pk, project_id=job.project_id)
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()

    for path in (f"/ws/v1/events/?job={job.pk}", f"/ws/v1/events/?project={job.project_id}", "/ws/v1/events/?job=x"):
        comm = _communicator(path, headers=[(b"authorization", f"Bearer {setup['outsider_token']}".encode())])
        await comm.connect(timeout=CONNECT_TIMEOUT)
        closed = await comm.receive_output(timeout=2)
        assert closed == {"type": "websocket.close", "code": 4404}
        await comm.disconnect()


async def test_anonymous_and_bad_tokens_are_closed(setup):
    for headers in ([], [(b"authorization", b"Bearer twr_not-a-real-token")]):
        comm = _communicator("/ws/v1/events/", headers=headers)
        await comm.connect(timeout=CONNECT_TIMEOUT)
        assert await comm.receive_output(timeout=2) == {"type": "websocket.close", "code": 4401}
        await comm.disconnect()


async def test_token_in_subprotocol_for_browsers(setup):
    comm = _communicator("/ws/v1/events/", subprotocols=[f"bearer.{setup['owner_token']}"])
    connected, subprotocol = await comm.connect(timeout=CONNECT_TIMEOUT)
    assert connected
    assert subprotocol == f"bearer.{setup['owner_token']}"
    assert (await comm.receive_json_from())["type"] == "subscribed"
    await comm.disconnect()


async def test_progress_is_throttled_but_the_last_step_always_goes_out(setup):
    comm = await _connect_as(setup["owner_token"], f"/ws/v1/events/?job={setup['job'].pk}")
    await comm.receive_json_from()
    job = setup["job"]

    def burst() -> list[bool]:
        return [
            events.progress_event(job_id=job.pk, project_id=job.project_id, value=v, maximum=50) for v in range(1, 51)
        ]

    sent = await sync_to_async(burst)()
    # 50 updates in a few milliseconds: the first and the final one pass the 10/s throttle.
    assert sent[0] and sent[-1]
    assert sum(sent) <= 3
    received = []
    for _ in range(sum(sent)):
        received.append(await comm.receive_json_from(timeout=3))
    assert [e["value"] for e in received][-1] == 50
    assert all(e["type"] == "progress" for e in received)
    await comm.disconnect()


def test_unknown_event_types_are_refused():
    with pytest.raises(ValueError, match="unknown event type"):
        events.job_event("job_exploded", job_id=1, project_id=1)
