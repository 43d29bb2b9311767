"""``/ws/pages/``: the socket every studio page opens (htmx's ws extension).

It authenticates by session, joins only groups the user may see (``?job=ID``: that job's group;
otherwise the groups of every visible project), and turns each engine event (see
``generation.events``) into HTML fragments that htmx swaps in by element id (``hx-swap-oob``).
Each fragment is rendered from the job's row as the database has it now (one query, which is also
the access check), never from the event's numbers, so a late or repeated event cannot show a
state that is not true. A ``quality_evaluation`` event re-renders a job page's quality panel (from
``quality.selectors.job_quality``; generation cannot render it, it does not know quality). Job
pages also get the newest log lines, when a line was added since the socket last sent them
(``LiveState``). Anonymous users and jobs the user may not see get a closed
socket (4401, 4404); the socket accepts nothing from the browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from generation.events import job_group, project_group
from generation.models import Asset, Job, JobLogLine
from generation.selectors import jobs_visible_to
from generation.views import job_context, job_log_lines
from projects.selectors import project_ids_visible_to
from quality.selectors import job_quality

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
TERMINAL_EVENTS = frozenset({"job_complete", "job_failed", "job_cancelled"})


def _groups_for(user: Any, job_id: str | None) -> list[str] | None:
    if job_id is not None:
        if not job_id.isdigit() or not jobs_visible_to(user).filter(pk=int(job_id)).exists():
            return None
        return [job_group(int(job_id))]
    return [project_group(pk) for pk in project_ids_visible_to(user).values_list("pk", flat=True)]


@dataclass
class LiveState:
    """What one socket has already sent, so unchanged fragments are not sent again."""

    log_last_id: int | None = None


def render_event(
    *, user: Any, event: dict[str, Any], job_page: bool, csrf_token: str, state: LiveState | None = None
) -> str:
    """The HTML fragments (all out-of-band) for one event, or "" when the user may not see the job."""
    job: Job | None = jobs_visible_to(user).filter(pk=event.get("job")).first()
    if job is None:
        return ""
    kind = event.get("type")
    context = {
        **job_context(job, user=user, preview=event.get("preview") if kind == "progress" else None),
        "oob": True,
        "csrf_token": csrf_token,
    }
    parts = []
    if kind == "job_queued" and not job_page:
        # A new row for pages that list live jobs (the dashboard, the unfiltered job list).
        parts.append(
            '<tbody hx-swap-oob="afterbegin:#live-jobs">'
            + render_to_string("partials/_job_row.html", {**context, "oob": False})
            + "</tbody>"
        )
    else:
        parts.append(render_to_string("partials/_job_row.html", context))
    if job_page:
        parts.append(render_to_string("partials/_job_live.html", context))
        parts.append(render_to_string("partials/_job_milestones.html", context))
        if kind in TERMINAL_EVENTS:
            # Buttons change only when the job ends; not replacing them on every progress step
            # keeps a click from landing on a button that is being swapped out.
            parts.append(render_to_string("partials/_job_actions.html", context))
        parts.append(_render_log(job, context, state))
        if kind == "quality_evaluation":
            parts.append(render_to_string("quality/_job_quality.html", {**context, "quality": job_quality(job=job)}))
    if kind in TERMINAL_EVENTS:
        assets = list(Asset.objects.filter(job=job).order_by("pk"))
        context["job_assets"] = assets
        if job_page:
            parts.append(render_to_string("partials/_job_outputs.html", context))
        elif assets:
            parts.append(render_to_string("partials/_recent_asset.html", context))
    return "".join(parts)


def _render_log(job: Job, context: dict[str, Any], state: LiveState | None) -> str:
    """The log fragment when a line was added since this socket last sent it ("" otherwise)."""
    last_id = JobLogLine.objects.filter(job=job).order_by("-id").values_list("id", flat=True).first()
    if state is not None and state.log_last_id == last_id:
        return ""
    if state is not None:
        state.log_last_id = last_id
    return render_to_string("partials/_job_log.html", {**context, "log_lines": job_log_lines(job)})


class PageConsumer(AsyncWebsocketConsumer):
    groups_joined: list[str]

    async def connect(self) -> None:
        self.groups_joined = []
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        job_id = query["job"][0] if "job" in query else None
        groups = await database_sync_to_async(_groups_for)(self.user, job_id)
        if groups is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.job_page = job_id is not None
        self.live = LiveState()
        # The page's forms post with this token (Django accepts the unmasked cookie secret).
        self.csrf_token = (self.scope.get("cookies") or {}).get("csrftoken", "")
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self.groups_joined = groups
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """One-way: pages change things through forms, never through the socket."""

    async def tower_event(self, message: dict[str, Any]) -> None:
        html = await database_sync_to_async(render_event)(
            user=self.user,
            event=message["event"],
            job_page=self.job_page,
            csrf_token=self.csrf_token,
            state=self.live,
        )
        if html:
            await self.send(text_data=html)
