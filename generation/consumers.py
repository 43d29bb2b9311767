"""JSON WebSocket for API clients: ``/ws/v1/events/`` (optionally ``?project=ID`` or ``?job=ID``).

It authenticates, joins only groups the user may see, and forwards events untouched. Without a
filter it follows every project the user can see (joined at connect time; reconnect after being
added to a project). Closes with 4401 for anonymous users and 4404 for anything not visible.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from generation.events import job_group, project_group, user_group
from generation.selectors import jobs_visible_to
from projects.selectors import projects_visible_to

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _groups_for(user: Any, query: dict[str, list[str]]) -> list[str] | None:
    if "job" in query:
        job = jobs_visible_to(user).filter(pk=_int(query["job"][0])).values("pk").first()
        return [job_group(job["pk"])] if job else None
    if "project" in query:
        pk = _int(query["project"][0])
        return [project_group(pk)] if projects_visible_to(user).filter(pk=pk).exists() else None
    ids = projects_visible_to(user).values_list("pk", flat=True)
    return [user_group(user.pk), *(project_group(pk) for pk in ids)]


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        return -1


class EventsConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        subprotocol = _bearer_subprotocol(self.scope)
        if user is None or not user.is_authenticated:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        groups = await _groups_for(user, query)
        if groups is None:
            await self.accept(subprotocol)
            await self.close(code=CLOSE_NOT_FOUND)
            return
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = groups
        await self.accept(subprotocol)
        await self.send_json({"type": "subscribed", "groups": len(groups)})

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The socket is one-way; commands go through the REST API.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def tower_event(self, message: dict[str, Any]) -> None:
        await self.send_json(message["event"])


def _bearer_subprotocol(scope: dict[str, Any]) -> str | None:
    for proto in scope.get("subprotocols", []) or []:
        if proto.startswith("bearer."):
            return proto
    return None
