"""What the page socket sends the movie pages (``tower.page_consumer`` with ``?episode=ID`` or ``?scene=ID``).

A page's socket joins its episode's or scene's group (movie events) and its project's group (the
segment jobs' events), after the access check. Every fragment is rendered from the database as
it is now, never from the event's numbers: the storyboard (and the film, on ``assembly_complete``)
for an episode page, the timeline for a scene page, and only a segment's progress bar on a
segment job's ``progress``. Events of other scenes, episodes or jobs render nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.loader import render_to_string

from generation.events import MOVIE_EVENT_TYPES, episode_group, project_group, scene_group
from generation.models import Job
from projects.selectors import episodes_visible_to, scenes_visible_to
from quality.models import Segment
from quality.movie_selectors import episode_film

# Job events that change a timeline or a storyboard card (an attempt starts; its output, status, scores).
JOB_END_EVENTS = frozenset({"job_queued", "job_complete", "job_failed", "job_cancelled", "quality_evaluation"})
MOVIE_PAGES = ("episode", "scene")


def movie_page_groups(user: Any, page: str, raw_id: str) -> list[str] | None:
    """The groups a movie page's socket joins, or None when the user may not see the page."""
    if page not in MOVIE_PAGES or not raw_id.isdigit() or not 0 < int(raw_id) < 2**63:
        return None
    if page == "episode":
        row = episodes_visible_to(user).filter(pk=int(raw_id)).values("pk", "project_id").first()
        return None if row is None else [episode_group(row["pk"]), project_group(row["project_id"])]
    scene = scenes_visible_to(user).filter(pk=int(raw_id)).values("pk", "episode__project_id").first()
    return None if scene is None else [scene_group(scene["pk"]), project_group(scene["episode__project_id"])]


def _segment_of_job(job_id: Any, page: str, page_id: int) -> bool:
    if not isinstance(job_id, int):
        return False
    rows = Segment.objects.filter(jobs__pk=job_id) | Segment.objects.filter(job_id=job_id)
    if page == "scene":
        return rows.filter(scene_id=page_id).exists()
    return rows.filter(scene__episode_id=page_id).exists()


def movie_page_fragments(*, user: Any, event: dict[str, Any], page: str, page_id: int, csrf_token: str) -> str:
    """The out-of-band fragments ``event`` changes on this movie page, else ""."""
    kind = event.get("type")
    if kind in MOVIE_EVENT_TYPES:
        if event.get(page) != page_id:
            return ""
        if kind == "assembly_progress":  # the film's bar alone: a storyboard a second is too much
            return _assembly_progress(user, page_id)
    elif kind == "progress":
        if page != "scene" or not _segment_of_job(event.get("job"), page, page_id):
            return ""
        return _progress(user, event.get("job"), page_id)
    elif kind not in JOB_END_EVENTS or not _segment_of_job(event.get("job"), page, page_id):
        return ""
    try:
        if page == "episode":
            return _episode_fragments(user, page_id, kind, csrf_token)
        return _scene_fragments(user, page_id, csrf_token)
    except (Http404, PermissionDenied):
        return ""


def _episode_fragments(user: Any, episode_id: int, kind: Any, csrf_token: str) -> str:
    from projects.selectors import episode_get_for_user
    from quality.movie_views import episode_context

    context = {**episode_context(user, episode_get_for_user(user=user, pk=episode_id)), "oob": True}
    context["csrf_token"] = csrf_token
    parts = [render_to_string("movie/_storyboard.html", context)]
    if kind == "assembly_complete":  # not on other events: a film that plays would start again
        parts.append(render_to_string("movie/_film.html", context))
    return "".join(parts)


def _assembly_progress(user: Any, episode_id: int) -> str:
    episode = episodes_visible_to(user).filter(pk=episode_id).first()
    if episode is None:
        return ""
    context = {"episode": episode, "film": episode_film(episode), "oob": True}
    return render_to_string("movie/_assembly_progress.html", context)


def _scene_fragments(user: Any, scene_id: int, csrf_token: str) -> str:
    from projects.selectors import scene_get_for_user
    from quality.movie_scene_views import scene_context

    context = {**scene_context(user, scene_get_for_user(user=user, pk=scene_id)), "oob": True}
    context["csrf_token"] = csrf_token
    return render_to_string("movie/_timeline.html", context)


def _progress(user: Any, job_id: Any, scene_id: int) -> str:
    if not scenes_visible_to(user).filter(pk=scene_id).exists():
        return ""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return ""
    return render_to_string("movie/_segment_progress.html", {"job": job, "oob": True})
