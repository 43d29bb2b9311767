"""Tower's channel layer: channels_redis' RedisChannelLayer, receiving an event once per socket,
with one fix for Python 3.11."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from typing import Any

from channels_redis.core import RedisChannelLayer

# A message's delivery id (generation.events sets it): the copies of one event that a socket gets
# through several of its groups share it, and the socket receives the first only.
DELIVERY_KEY = "delivery"
RECENT_PER_CHANNEL = 32  # an event's copies land together; other senders' events may fall between
RECENT_CHANNELS = 10_000  # sockets come and go without telling the layer: the least recent are forgotten


class ChannelLayer(RedisChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recent_deliveries: OrderedDict[str, deque[str]] = OrderedDict()

    async def receive(self, channel: str) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = await super().receive(channel)
            delivery = message.get(DELIVERY_KEY)
            if delivery is None:
                return message
            seen = self.recent_deliveries.pop(channel, None)
            if seen is None:
                seen = deque(maxlen=RECENT_PER_CHANNEL)
            self.recent_deliveries[channel] = seen
            if len(self.recent_deliveries) > RECENT_CHANNELS:
                self.recent_deliveries.popitem(last=False)
            if delivery not in seen:
                seen.append(delivery)
                return message

    async def _brpop_with_clean(self, index: int, channel: str, timeout: float) -> bytes | None:
        # Python 3.11's asyncio.wait_for (redis-py sends through it) can swallow a cancel, and the
        # receive then polls forever; the cancel is still counted on the task, so re-raise it here.
        member: bytes | None = await super()._brpop_with_clean(index, channel, timeout)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError("cancelled while polling Redis (the cancel was swallowed on the way)")
        return member
