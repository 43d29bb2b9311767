"""Tower's channel layer: channels_redis' RedisChannelLayer with one fix for Python 3.11.

A socket's consumer reads its channel in a task that Channels cancels when the socket goes away.
On Python 3.11, ``asyncio.wait_for`` returns the inner result instead of raising when the cancel
arrives in the same loop turn as the inner future finishing (fixed in 3.12's rewrite); redis-py
sends every command through ``wait_for`` when a socket timeout is set. channels_redis'
``receive_single`` then sees an empty poll and polls again, 5 s at a time, forever: the
consumer never finishes, and holds a Redis connection. Seen about once in six runs of a test that
closed two sockets while their layer was still connecting to Redis.

The cancel request is still counted on the task (``Task.cancelling()``) when it has been
swallowed, so after each poll the layer re-raises it. A message popped by that poll stays in
channels_redis' backup queue, which the next receive on the channel puts back first: nothing is
lost.
"""

from __future__ import annotations

import asyncio

from channels_redis.core import RedisChannelLayer


class ChannelLayer(RedisChannelLayer):
    async def _brpop_with_clean(self, index: int, channel: str, timeout: float) -> bytes | None:
        member = await super()._brpop_with_clean(index, channel, timeout)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError("cancelled while polling Redis (the cancel was swallowed on the way)")
        return member
