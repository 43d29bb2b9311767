"""Tower's channel layer ends a socket's receive when the cancel was swallowed on the way down."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer

pytestmark = pytest.mark.redis


@pytest.fixture
def swallowing_poll(monkeypatch):
    """channels_redis' poll behaving as it does on Python 3.11 when a cancel meets a finished read.

    ``asyncio.wait_for`` (which redis-py sends every command through) returns the result instead
    of raising; to the layer the poll simply came back empty. The first cancel is swallowed this way.
    """
    original = RedisChannelLayer._brpop_with_clean
    swallowed = []

    async def poll(self, index, channel, timeout):
        try:
            return await original(self, index, channel, timeout)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed.append(channel)
            return None

    monkeypatch.setattr(RedisChannelLayer, "_brpop_with_clean", poll)
    return swallowed


async def _receive_then_cancel(layer) -> tuple[asyncio.Task, str]:
    channel = await layer.new_channel()
    task = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.3)  # the receive is now blocked in BZPOPMIN
    task.cancel()
    # Generous: the poll the cancel was swallowed by would otherwise run for 5 s, and the next
    # one never ends.
    await asyncio.wait({task}, timeout=8)
    return task, channel


async def test_a_swallowed_cancel_still_ends_the_receive(channel_layer, swallowing_poll):
    task, _ = await _receive_then_cancel(channel_layer)

    assert swallowing_poll, "the cancel reached the poll"
    assert task.done() and task.cancelled()


async def test_the_stock_layer_would_poll_forever(channel_layer, swallowing_poll, settings):
    """The same cancel against channels_redis' own class: the receive is still running (the bug)."""
    stock = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
    task, _ = await _receive_then_cancel(stock)
    try:
        assert swallowing_poll
        assert not task.done()
    finally:
        # Cancelled again: this poll raises (only the first cancel is swallowed).
        task.cancel()
        await asyncio.wait({task}, timeout=8)
        await stock.flush()


async def test_a_message_sent_after_a_cancelled_receive_reaches_the_next_one(channel_layer, swallowing_poll):
    task, channel = await _receive_then_cancel(channel_layer)
    assert task.cancelled()

    await channel_layer.send(channel, {"type": "tower.event", "event": {"type": "job_queued"}})
    message = await asyncio.wait_for(channel_layer.receive(channel), timeout=5)

    assert message["event"] == {"type": "job_queued"}
