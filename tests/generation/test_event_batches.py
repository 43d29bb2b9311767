"""Events leave in the background after commit: order kept, each socket served once, a dead broker
harmless. Through the real Redis channel layer."""

from __future__ import annotations

import logging

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from generation import events
from generation.events import job_group, project_group, user_group

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _receive_all(layer, channel: str, *, until: int, wait: float = 3) -> list[dict]:
    """Every event on the channel, waiting for at most ``until`` of them, ``wait`` seconds for each."""
    import asyncio

    async def drain() -> list[dict]:
        got: list[dict] = []
        while len(got) < until:
            try:
                # Generous: the sender batches in the background, and a loaded CI machine can lag a second.
                message = await asyncio.wait_for(layer.receive(channel), wait)
            except TimeoutError:
                break
            got.append(message["event"])
        return got

    return async_to_sync(drain)()


def _join(layer, *groups: str) -> str:
    channel = async_to_sync(layer.new_channel)()
    for group in groups:
        async_to_sync(layer.group_add)(group, channel)
    return channel


def test_a_burst_of_events_arrives_complete_and_in_order(channel_layer):
    channel = _join(channel_layer, project_group(7))
    for value in range(60):
        events.job_event("progress", job_id=1000 + value % 3, project_id=7, value=value, max=60)
    events.flush()

    received = _receive_all(channel_layer, channel, until=61)

    assert [e["value"] for e in received] == list(range(60))


def test_events_of_a_transaction_arrive_in_order_after_its_commit(channel_layer):
    channel, early = _join(channel_layer, job_group(8)), _join(channel_layer, job_group(8))
    with transaction.atomic():
        events.job_event("job_queued", job_id=8, project_id=3, user_id=2)
        events.progress_event(job_id=8, project_id=3, value=1, maximum=2)
        events.job_event("job_complete", job_id=8, project_id=3, user_id=2, assets=[])
        events.flush()
        assert _receive_all(channel_layer, early, until=1, wait=0.5) == []  # not before the commit
    events.flush()

    received = _receive_all(channel_layer, channel, until=4)

    assert [e["type"] for e in received] == ["job_queued", "progress", "job_complete"]


def test_a_socket_in_several_groups_of_an_event_gets_it_once(channel_layer):
    both = _join(channel_layer, job_group(5), project_group(9), user_group(3))
    only_user = _join(channel_layer, user_group(3))

    events.job_event("job_complete", job_id=5, project_id=9, user_id=3, assets=[])
    events.job_event("job_queued", job_id=6, project_id=9, user_id=None)
    events.flush()

    assert [(e["type"], e["job"]) for e in _receive_all(channel_layer, both, until=3)] == [
        ("job_complete", 5),
        ("job_queued", 6),
    ]
    assert [(e["type"], e["job"]) for e in _receive_all(channel_layer, only_user, until=2)] == [("job_complete", 5)]


def test_events_to_groups_nobody_joined_are_dropped_quietly(channel_layer, caplog):
    listener = _join(channel_layer, project_group(2))
    with caplog.at_level(logging.WARNING, logger="generation.events"):
        events.job_event("job_failed", job_id=11, project_id=1, user_id=4, error={"message": "x"})
        events.job_event("job_failed", job_id=12, project_id=2, error={"message": "y"})
        events.flush()

    assert [e["job"] for e in _receive_all(channel_layer, listener, until=2)] == [12]
    assert not caplog.records


def test_an_unreachable_broker_loses_events_with_a_warning_and_never_fails_the_caller(settings, caplog, tmp_path):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tower.core.layers.ChannelLayer",
            "CONFIG": {"hosts": [{"address": f"unix://{tmp_path}/nobody.sock"}], "prefix": "gone"},
        }
    }
    channel_layers.backends.clear()
    try:
        with caplog.at_level(logging.WARNING, logger="generation.events"):
            events.job_event("job_complete", job_id=1, project_id=1, assets=[])
            events.flush()
    finally:
        channel_layers.backends.clear()

    assert any("could not send 1 event(s) (job_complete)" in r.getMessage() for r in caplog.records)


def test_a_page_watching_a_project_gets_every_event_of_several_full_batch_requests(channel_layer):
    """Three requests of 64 jobs queue 192 job_queued events at once; the job_complete sent after
    them still reaches the page (channels_redis would drop messages past 100 by default)."""
    from generation.services.submit import MAX_JOBS_PER_REQUEST

    page = _join(channel_layer, project_group(4))
    jobs = range(1, 3 * MAX_JOBS_PER_REQUEST + 1)
    for job in jobs:
        events.job_event("job_queued", job_id=job, project_id=4)
    events.job_event("job_complete", job_id=1, project_id=4, assets=[])
    events.flush()

    received = _receive_all(channel_layer, page, until=len(jobs) + 2)

    assert [(e["type"], e["job"]) for e in received] == [("job_queued", j) for j in jobs] + [("job_complete", 1)]
