"""JSON WebSocket for API clients: ``/ws/v1/events/`` (optionally ``?project=ID`` or ``?job=ID``).

It authenticates, joins only groups the user may see, and forwards events untouched. Without a
filter it follows every project the user can see (joined at connect time; reconnect after being
added to a project). Closes with 4401 for anonymous users and 4404 for anything not visible.

Access is checked again before each event is forwarded (two indexed queries): a revoked token or
a signed-out session closes the socket with 4401; a project the user no longer belongs to stops
sending (the group is left), and a socket that followed only that project or one of its jobs is
closed with 4404. The socket is one-way apart from ``{"type": "ping"}``; any other frame (not
JSON, binary, too deep, too large) is answered with ``{"type": "error", "error": …}``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from generation.events import job_group, project_group, user_group
from generation.selectors import job_get_for_user
from projects.selectors import projects_visible_to
from tower.core.sockets import credentials_hold

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
MAX_FRAME_CHARS = 4096  # a ping is 16; nothing larger is worth parsing
FRAME_HELP = 'this socket only sends events; the one message it answers is {"type": "ping"}'


@database_sync_to_async
def _groups_for(user: Any, query: dict[str, list[str]]) -> list[str] | None:
    if "job" in query:
        try:
            job = job_get_for_user(user=user, pk=_int(query["job"][0]))
        except Http404:
            return None
        return [job_group(job.pk)]
    if "project" in query:
        pk = _int(query["project"][0])
        return [project_group(pk)] if projects_visible_to(user).filter(pk=pk).exists() else None
    ids = projects_visible_to(user).values_list("pk", flat=True)
    return [user_group(user.pk), *(project_group(pk) for pk in ids)]


@database_sync_to_async
def _access(scope: dict[str, Any], project_id: Any) -> str:
    """ "ok", "credentials" (token revoked, signed out, deactivated) or "project" (no longer visible)."""
    if not credentials_hold(scope):
        return "credentials"
    if isinstance(project_id, int) and not projects_visible_to(scope["user"]).filter(pk=project_id).exists():
        return "project"
    return "ok"


def _int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        return -1
    return number if 0 < number < 2**63 else -1


class EventsConsumer(AsyncJsonWebsocketConsumer):
    groups_joined: list[str]
    closing: bool

    async def connect(self) -> None:
        self.groups_joined = []
        self.closing = False
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
        # Followed one project or one job: losing access to it leaves nothing to follow.
        self.filtered = "job" in query or "project" in query
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = groups
        await self.accept(subprotocol)
        await self.send_json({"type": "subscribed", "groups": len(groups)})

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        # Parsed here rather than by the base class, which raises on anything that is not JSON text.
        if text_data is None:
            await self._error("binary frames are not accepted; " + FRAME_HELP)
            return
        if len(text_data) > MAX_FRAME_CHARS:
            await self._error(f"frames are limited to {MAX_FRAME_CHARS} characters; " + FRAME_HELP)
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            await self._error("frames must be JSON; " + FRAME_HELP)
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        # The socket is one-way; commands go through the REST API.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self._error(FRAME_HELP)

    async def tower_event(self, message: dict[str, Any]) -> None:
        if self.closing:
            return  # events that were already queued when the socket lost its access
        event = message["event"]
        project_id = event.get("project")
        access = await _access(self.scope, project_id)
        if access == "credentials":
            await self._leave_all()
            await self.close(code=CLOSE_UNAUTHENTICATED)
        elif access == "project" and self.filtered:
            await self._leave_all()
            await self.close(code=CLOSE_NOT_FOUND)
        elif access == "project":
            group = project_group(project_id)
            if group in self.groups_joined:
                self.groups_joined.remove(group)
                await self.channel_layer.group_discard(group, self.channel_name)
        else:
            await self.send_json(event)

    async def _leave_all(self) -> None:
        self.closing = True
        groups, self.groups_joined = self.groups_joined, []
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _error(self, text: str) -> None:
        await self.send_json({"type": "error", "error": text})


def _bearer_subprotocol(scope: dict[str, Any]) -> str | None:
    for proto in scope.get("subprotocols", []) or []:
        if proto.startswith("bearer."):
            return proto
    return None
