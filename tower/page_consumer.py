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
socket (4401, 4404); the socket accepts nothing from the browser (any frame is ignored). Before
each event the socket's credentials are checked again (``credentials_hold``): after a sign-out, a
deactivation or a revoked token the socket is closed with 4401 at its next event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404
from django.template.loader import render_to_string

from generation.events import job_group, project_group
from generation.generate_views import output_pane_jobs, render_output_pane_event
from generation.job_views import job_context, job_list_page, job_log_lines
from generation.models import Asset, Job, JobLogLine
from generation.selectors import job_get_for_user
from projects.selectors import project_ids_visible_to
from quality.movie_live import MOVIE_PAGES, movie_page_fragments, movie_page_groups
from quality.orchestration_views import orchestration_page_fragments, orchestration_page_groups
from quality.selectors import job_quality
from tower.views import (
    ACTIVE_STATUSES,
    DASHBOARD_ACTIVE_ROWS,
    backend_health,
    dashboard_active_jobs,
    dashboard_recent_assets,
)
from tower.ws_auth import credentials_hold

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404
TERMINAL_EVENTS = frozenset({"job_complete", "job_failed", "job_cancelled"})


VIEWS = frozenset({"dashboard", "jobs", "generate"})


def _groups_for(user: Any, job_id: str | None, view: str | None) -> list[str] | None:
    if job_id is not None:
        try:
            job = job_get_for_user(user=user, pk=job_id if job_id.isdigit() else -1)
        except Http404:
            return None
        return [job_group(job.pk)]
    if view not in VIEWS:
        return []  # a page with nothing live on it: the socket only says it is connected
    return [project_group(pk) for pk in project_ids_visible_to(user).values_list("pk", flat=True)]


@dataclass
class LiveState:
    """What one socket has already sent (or its page shows), so that unchanged fragments are not
    sent again and every fragment sent has its target on the page."""

    log_last_id: int | None = None
    view: str = ""
    # Job rows the page shows and, on the dashboard, the status each was rendered with.
    rows: dict[int, str] = field(default_factory=dict)
    insert: bool = False  # the job list's first unfiltered page: new jobs are added on top
    empty_row: bool = False  # the list still shows its "no jobs" row


def live_state_for(*, user: Any, view: str | None, params: dict[str, str]) -> LiveState:
    """The rows a dashboard or job list page shows as it connects (it re-reads them then too)."""
    if view == "dashboard":
        return LiveState(view=view, rows={job.pk: job.status for job in dashboard_active_jobs(user)})
    if view == "jobs":
        _, page, filtered = job_list_page(user, params)
        rows = {job.pk: job.status for job in page}
        return LiveState(view=view, rows=rows, insert=not filtered and page.number == 1, empty_row=not rows)
    if view == "generate":  # the Generate page's output pane: the jobs of its last submission
        return LiveState(view=view, rows={job.pk: job.status for job in output_pane_jobs(user, params)})
    return LiveState(view=view or "")


def render_event(
    *,
    user: Any,
    event: dict[str, Any],
    job_page: bool = False,
    csrf_token: str,
    state: LiveState | None = None,
) -> str:
    """The HTML fragments (all out-of-band) for one event, or "" when the user may not see the job.

    A job page gets its job's panels; a dashboard or job list (``state.view``) gets the rows it
    shows; other pages get nothing.
    """
    pk = event.get("job")
    if pk is None:  # not a job's event
        return ""
    try:
        job = job_get_for_user(user=user, pk=pk)
    except Http404:
        return ""
    kind = event.get("type")
    context = {
        **job_context(job, user=user, preview=event.get("preview") if kind == "progress" else None),
        "oob": True,
        "csrf_token": csrf_token,
    }
    if job_page:
        return _render_job_page(job, kind, context, state)
    if state is not None and state.view == "dashboard":
        return _render_dashboard(job, kind, context, state, user)
    if state is not None and state.view == "jobs":
        return _render_job_list(job, kind, context, state)
    if state is not None and state.view == "generate":
        return render_output_pane_event(job, kind, context) if job.pk in state.rows else ""
    return ""


def _render_job_page(job: Job, kind: Any, context: dict[str, Any], state: LiveState | None) -> str:
    parts: list[str] = [
        render_to_string("partials/_job_live.html", context),
        render_to_string("partials/_job_milestones.html", context),
    ]
    if kind in TERMINAL_EVENTS:
        # Buttons change only when the job ends; not replacing them on every progress step
        # keeps a click from landing on a button that is being swapped out.
        parts.append(render_to_string("partials/_job_actions.html", context))
    parts.append(_render_log(job, context, state))
    if kind == "quality_evaluation":
        parts.append(render_to_string("quality/_job_quality.html", {**context, "quality": job_quality(job=job)}))
    if kind in TERMINAL_EVENTS:
        context["job_assets"] = list(Asset.objects.filter(job=job).order_by("pk"))
        parts.append(render_to_string("partials/_job_outputs.html", context))
    return "".join(parts)


def _render_dashboard(job: Job, kind: Any, context: dict[str, Any], state: LiveState, user: Any) -> str:
    """A row's progress while its status holds; when a job joins or leaves "Running and queued" (or
    changes status), that section and the backends' GPU counts again, from the database."""
    parts = []
    if state.rows.get(job.pk) == job.status:
        parts.append(render_to_string("partials/_job_row.html", context))
    elif job.pk in state.rows or (job.status in ACTIVE_STATUSES and len(state.rows) < DASHBOARD_ACTIVE_ROWS):
        active = dashboard_active_jobs(user)
        state.rows = {row.pk: row.status for row in active}
        parts.append(render_to_string("tower/_dashboard_active.html", {"active_jobs": active, "oob": True}))
        parts.append(render_to_string("tower/_dashboard_backends.html", {"backends": backend_health(), "oob": True}))
    if kind in TERMINAL_EVENTS and Asset.objects.filter(job=job).exists():
        recent = dashboard_recent_assets(user)
        parts.append(render_to_string("tower/_dashboard_recent.html", {"recent_assets": recent, "oob": True}))
    return "".join(parts)


def _render_job_list(job: Job, kind: Any, context: dict[str, Any], state: LiveState) -> str:
    if job.pk in state.rows:
        return render_to_string("partials/_job_row.html", context)
    if kind != "job_queued" or not state.insert:
        return ""  # not a row of this page
    state.rows[job.pk] = job.status
    parts = [
        '<tbody hx-swap-oob="afterbegin:#live-jobs">'
        + render_to_string("partials/_job_row.html", {**context, "oob": False})
        + "</tbody>"
    ]
    if state.empty_row:
        state.empty_row = False
        parts.append('<tbody id="live-jobs-empty" hx-swap-oob="true" hidden></tbody>')
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
    closing: bool

    async def connect(self) -> None:
        self.groups_joined = []
        self.closing = False
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode(errors="replace"))
        job_id = query["job"][0] if "job" in query else None
        view = query["view"][0] if "view" in query else None
        # An orchestration's page: its phase cards (quality renders them; see orchestration_views).
        self.orchestration = int(query["orchestration"][0]) if query.get("orchestration", [""])[0].isdigit() else None
        # An episode's storyboard or a scene's timeline (quality.movie_live renders them).
        self.movie = next(((page, query[page][0]) for page in MOVIE_PAGES if page in query), None)
        if "orchestration" in query:
            groups = await database_sync_to_async(orchestration_page_groups)(self.user, query["orchestration"][0])
        elif self.movie is not None:
            groups = await database_sync_to_async(movie_page_groups)(self.user, *self.movie)
        else:
            groups = await database_sync_to_async(_groups_for)(self.user, job_id, view)
        if groups is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.job_page = job_id is not None
        params = {key: values[0] for key, values in query.items()}
        self.live = await database_sync_to_async(live_state_for)(user=self.user, view=view, params=params)
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
        if self.closing:
            return  # events that were already queued when the socket lost its credentials
        if not await database_sync_to_async(credentials_hold)(self.scope):
            self.closing = True
            await self.disconnect(CLOSE_UNAUTHENTICATED)
            self.groups_joined = []
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if self.orchestration is not None:
            html = await database_sync_to_async(orchestration_page_fragments)(
                user=self.user, event=message["event"], orchestration_id=self.orchestration, csrf_token=self.csrf_token
            )
        elif self.movie is not None:
            html = await database_sync_to_async(movie_page_fragments)(
                user=self.user,
                event=message["event"],
                page=self.movie[0],
                page_id=int(self.movie[1]),
                csrf_token=self.csrf_token,
            )
        else:
            html = await database_sync_to_async(render_event)(
                user=self.user,
                event=message["event"],
                job_page=self.job_page,
                csrf_token=self.csrf_token,
                state=self.live,
            )
        if html:
            await self.send(text_data=html)
