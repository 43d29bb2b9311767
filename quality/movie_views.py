"""Movie pages: an episode's storyboard (its scenes in order, the film and Assemble) and the edits of
its scenes (add, edit, move, delete).

The storyboard and the film are fragments rendered from the database: the page includes them, a
``GET`` with HTMX answers the storyboard alone, and the page socket (``tower.page_consumer`` with
``?episode=ID``) re-sends them after movie events (``quality.movie_live``). The scene page (the
timeline) is in ``quality.movie_scene_views``. Outsiders get 404; viewers see everything and no
write buttons, and their POSTs are refused (403). Bad input re-renders the page with the message
and a 400; nothing changes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from generation.assembly_task import AssemblyError, assembly_start
from generation.models import Assembly
from projects.models import Episode, Scene
from projects.scenes import scene_add, scene_edit, scene_move, scene_remove, scenes_reorder
from projects.selectors import episode_get_for_user, project_get_for_user, project_user_can_write, scene_get_for_user
from projects.services import ProjectError, episode_create
from quality.movie_forms import AssembleForm, EpisodeForm, SceneForm
from quality.movie_selectors import episode_film, storyboard
from tower.core.errors import DomainError
from tower.core.pages import form_add_service_errors, page_login_required, render_page
from tower.core.users import signed_in

ORDER_MAX = 1000  # scene ids one reorder may name


def episode_context(user: Any, episode: Episode) -> dict[str, Any]:
    """What the storyboard and film fragments render: shared by the page and the page socket.

    ``revision``: when the storyboard was read (microseconds, taken before the reads), so the page
    keeps the newest of two answers that arrive out of order (``static/js/storyboard.js``)."""
    revision = str(time.time_ns() // 1000)  # a string: never localised with separators
    film = episode_film(episode)
    cards = storyboard(episode)
    return {
        "section": "projects",
        "episode": episode,
        "project": episode.project,
        "cards": cards,
        "revision": revision,
        "film": film,
        "total_seconds": sum(card.scene.duration_seconds for card in cards),
        "can_write": project_user_can_write(project=episode.project, user=user),
    }


def _episode_page(
    request: HttpRequest,
    episode: Episode,
    *,
    add_form: SceneForm | None = None,
    errors: Sequence[str] = (),
    status: int = 200,
) -> HttpResponse:
    context = {
        **episode_context(request.user, episode),
        "add_form": add_form or SceneForm(project=episode.project, prefix="add"),
        "errors": list(errors),
    }
    return render_page(request, "movie/episode.html", "movie/_storyboard.html", context, status=status)


@page_login_required
@require_POST
def episode_create_view(request: HttpRequest, pk: int) -> HttpResponse:
    """A new episode of project ``pk`` (the project page's Episodes card), then its storyboard."""
    project = project_get_for_user(user=request.user, pk=pk, write=True)
    form = EpisodeForm(request.POST)
    if form.is_valid():
        try:
            episode = episode_create(project=project, **form.cleaned_data)
        except (ValidationError, ProjectError) as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(request, f"Episode {episode.number} “{episode.title}” created.")
            return redirect("episode-detail", pk=episode.pk)
    errors = [f"{name}: {' '.join(str(m) for m in e)}" for name, e in form.errors.items()]
    messages.error(request, "The episode was not created. " + " ".join(errors).replace("__all__: ", ""))
    response = redirect("project-detail", pk=project.pk)
    response.status_code = 303
    return response


@page_login_required
@require_GET
def episode_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The page; with HTMX the storyboard alone, or the film alone with ``?part=film`` (a reconnect
    re-reads both: an assembly may have finished while the socket was away)."""
    episode = episode_get_for_user(user=request.user, pk=pk)
    if request.GET.get("part") == "film" and getattr(request, "htmx", False):
        return render_page(request, "movie/episode.html", "movie/_film.html", episode_context(request.user, episode))
    return _episode_page(request, episode)


@page_login_required
@require_POST
def episode_scene_add(request: HttpRequest, pk: int) -> HttpResponse:
    episode = episode_get_for_user(user=request.user, pk=pk, write=True)
    form = SceneForm(request.POST, project=episode.project, prefix="add")
    if form.is_valid():
        try:
            scene = scene_add(episode=episode, characters=form.cleaned_data["characters"], **form.scene_fields())
        except (ValidationError, ProjectError) as exc:
            form_add_service_errors(form, exc)
        else:
            messages.success(request, f"Scene {scene.number} added.")
            return redirect("episode-detail", pk=episode.pk)
    return _episode_page(request, episode, add_form=form, errors=["The scene was not added."], status=400)


@page_login_required
@require_POST
def episode_reorder(request: HttpRequest, pk: int) -> HttpResponse:
    """The running order from the storyboard's drag and drop: ``order`` is every scene id, in order."""
    episode = episode_get_for_user(user=request.user, pk=pk, write=True)
    raw = request.POST.getlist("order")
    try:
        if not 0 < len(raw) <= ORDER_MAX:
            raise ProjectError("the new order must name every scene of the episode exactly once")
        scenes_reorder(episode=episode, order=[_number(value) for value in raw])
    except ProjectError as exc:
        return _episode_page(request, episode, errors=[str(exc)], status=400)
    return _episode_page(request, episode)


@page_login_required
@require_POST
def episode_assemble(request: HttpRequest, pk: int) -> HttpResponse:
    """Start assembling the episode's film on a worker (generation.assembly_task)."""
    episode = episode_get_for_user(user=request.user, pk=pk, write=True)
    form = AssembleForm(request.POST)
    if not form.is_valid():
        problems = [f"{name}: {' '.join(str(m) for m in e)}" for name, e in form.errors.items()]
        return _episode_page(request, episode, errors=[f"The film was not assembled. {' '.join(problems)}"], status=400)
    try:
        assembly: Assembly = assembly_start(
            episode=episode,
            user=signed_in(request.user),
            container=form.cleaned_data["container"],
            crossfade_frames=form.cleaned_data["crossfade_frames"] or 0,
        )
    except (AssemblyError, ValidationError, DomainError) as exc:
        message = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return _episode_page(request, episode, errors=[f"The film could not be assembled: {message}"], status=400)
    messages.success(request, f"Assembly #{assembly.pk} queued: the film appears here when it is done.")
    return redirect("episode-detail", pk=episode.pk)


# --- One scene's card: edit, move, delete -----------------------------------------------------


def _scene_for_write(request: HttpRequest, pk: int) -> Scene:
    return scene_get_for_user(user=request.user, pk=pk, write=request.method == "POST")


@page_login_required
@require_http_methods(["GET", "POST"])
def scene_edit_view(request: HttpRequest, pk: int) -> HttpResponse:
    scene = _scene_for_write(request, pk)
    project = scene.episode.project
    can_write = project_user_can_write(project=project, user=request.user)
    if request.method == "POST":
        form = SceneForm(request.POST, project=project)
        if form.is_valid():
            try:
                scene_edit(scene=scene, characters=form.cleaned_data["characters"], **form.scene_fields())
            except (ValidationError, ProjectError) as exc:
                form_add_service_errors(form, exc)
            else:
                messages.success(request, f"Scene {scene.number} saved.")
                return redirect("episode-detail", pk=scene.episode_id)
        scene.refresh_from_db()
    else:
        initial = {
            f: getattr(scene, f) for f in ("title", "description", "duration_seconds", "mood", "camera", "lighting")
        }
        form = SceneForm(initial={**initial, "characters": list(scene.characters.all())}, project=project)
    context = {"section": "projects", "scene": scene, "episode": scene.episode, "form": form, "can_write": can_write}
    return render_page(request, "movie/scene_edit.html", None, context, status=400 if form.errors else 200)


@page_login_required
@require_POST
def scene_move_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Up or down one place (the storyboard's buttons, which work without JavaScript), or to ``position``."""
    scene = _scene_for_write(request, pk)
    direction = request.POST.get("direction", "")
    if direction in {"up", "down"}:
        position = scene.number - 1 if direction == "up" else scene.number + 1
    else:
        try:
            position = _number(request.POST.get("position", ""))
        except ProjectError:
            return _episode_page(
                request, scene.episode, errors=["Move up, down, or to a position (1, 2, …)."], status=400
            )
    try:
        scene_move(scene=scene, position=position)
    except ProjectError as exc:
        return _episode_page(request, scene.episode, errors=[str(exc)], status=400)
    if getattr(request, "htmx", False):
        return _episode_page(request, scene.episode)
    return redirect("episode-detail", pk=scene.episode_id)


@page_login_required
@require_http_methods(["GET", "POST"])
def scene_delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    """GET asks for confirmation (what will be lost); POST deletes and closes up the running order."""
    scene = _scene_for_write(request, pk)
    if request.method == "POST":
        if request.POST.get("confirm") != "yes":
            return _episode_page(
                request, scene.episode, errors=["Confirm the deletion to delete the scene."], status=400
            )
        episode_id, number = scene.episode_id, scene.number
        scene_remove(scene=scene)
        messages.success(request, f"Scene {number} deleted.")
        return redirect("episode-detail", pk=episode_id)
    context = {
        "section": "projects",
        "scene": scene,
        "episode": scene.episode,
        "segment_count": scene.segments.count(),
        "can_write": project_user_can_write(project=scene.episode.project, user=request.user),
    }
    return render_page(request, "movie/scene_delete.html", None, context)


def _number(value: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ProjectError(f"not a number: {str(value)[:20]!r}") from None
    if not 0 < number < 2**31:
        raise ProjectError(f"out of range: {number}")
    return number
