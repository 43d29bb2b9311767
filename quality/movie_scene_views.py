"""The scene page: its segments as a timeline (frames, scores, joins, status, retry), Generate, and
its continuity memory (shown with what is carried from earlier scenes, editable, with its log).

The timeline is one fragment rendered from the database (``movie/_timeline.html``): the page
includes it, an HTMX ``GET`` answers it alone, and the page socket (``?scene=ID``) re-sends it on
the scene's movie events and its segment jobs' ends, and a segment's progress bar on their
progress (``quality.movie_live``). Generate and Retry go through ``quality.movie.chain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from projects.models import Scene
from projects.selectors import project_user_can_write, scene_get_for_user
from quality.models import Segment, SegmentStatus
from quality.movie_forms import GenerateForm
from quality.movie_memory import MemoryForm, memory_context, memory_form_save
from quality.movie_selectors import scene_timeline
from tower.core.pages import page_login_required, render_page
from tower.core.users import signed_in


def scene_context(user: Any, scene: Scene) -> dict[str, Any]:
    """What the timeline fragment renders: shared by the page and the page socket."""
    card = scene_timeline(scene)
    can_write = project_user_can_write(project=scene.episode.project, user=user)
    running = card.run is not None and card.run.status == SegmentStatus.RUNNING
    return {
        "section": "projects",
        "scene": scene,
        "episode": scene.episode,
        "project": scene.episode.project,
        "card": card,
        "segments": card.segments,
        "can_write": can_write,
        "running": running,
        # A failed segment (its job, or its join out of attempts) can be tried again once nothing runs.
        "can_retry": can_write and not running,
    }


def _scene_page(
    request: HttpRequest,
    scene: Scene,
    *,
    generate_form: GenerateForm | None = None,
    memory_form: MemoryForm | None = None,
    errors: Sequence[str] = (),
    status: int = 200,
) -> HttpResponse:
    project = scene.episode.project
    form = generate_form or GenerateForm(project=project, initial={"template": _last_template(scene)})
    context = {
        **scene_context(request.user, scene),
        "generate_form": form,
        **memory_context(scene=scene, form=memory_form),
        "errors": list(errors),
    }
    return render_page(request, "movie/scene.html", "movie/_timeline.html", context, status=status)


def _last_template(scene: Scene) -> str | None:
    run = scene.runs.select_related("template").order_by("-created_at", "-pk").first()
    return run.template.slug if run is not None and run.template is not None else None


@page_login_required
@require_GET
def scene_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _scene_page(request, scene_get_for_user(user=request.user, pk=pk))


@page_login_required
@require_POST
def scene_generate_view(request: HttpRequest, pk: int) -> HttpResponse:
    scene = scene_get_for_user(user=request.user, pk=pk, write=True)
    form = GenerateForm(request.POST, project=scene.episode.project)
    if not form.is_valid():
        return _scene_page(request, scene, generate_form=form, errors=["Nothing was generated."], status=400)
    from quality.movie.chain import SceneError, scene_generate

    data = form.cleaned_data
    try:
        run = scene_generate(
            scene=scene,
            user=signed_in(request.user),
            template=data["template"],
            segments=data["segments"],
            motion_prompt=data["motion_prompt"],
            force_reason=data["force_reason"],
        )
    except (SceneError, ValidationError) as exc:
        message = " ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return _scene_page(request, scene, generate_form=form, errors=[f"Not generated: {message}"], status=400)
    messages.success(request, f"Generating {run.segments_planned} segment{'s' if run.segments_planned != 1 else ''}.")
    return redirect("scene-detail", pk=scene.pk)


@page_login_required
@require_POST
def segment_retry(request: HttpRequest, pk: int) -> HttpResponse:
    """Retry a failed segment (a failed job or a join out of attempts): the chain goes on from it,
    the complete segments before it kept (``quality.movie.chain.segment_retry``)."""
    segment = Segment.objects.filter(pk=pk).first()
    if segment is None:
        raise Http404("No such segment")
    scene = scene_get_for_user(user=request.user, pk=segment.scene_id, write=True)
    from quality.movie.chain import SceneError
    from quality.movie.chain import segment_retry as retry

    try:
        retry(segment=segment, user=signed_in(request.user))
    except SceneError as exc:
        return _scene_page(request, scene, errors=[f"Not retried: {exc}"], status=400)
    messages.success(request, f"Segment {segment.number} is being generated again; the scene goes on from it.")
    return redirect("scene-detail", pk=scene.pk)


@page_login_required
@require_POST
def scene_memory(request: HttpRequest, pk: int) -> HttpResponse:
    """Save the scene's continuity memory (only the fields that differ from what it carries)."""
    scene = scene_get_for_user(user=request.user, pk=pk, write=True)
    form, saved = memory_form_save(scene=scene, data=request.POST, user=signed_in(request.user))
    if not saved:
        return _scene_page(request, scene, memory_form=form, errors=["The memory was not saved."], status=400)
    messages.success(request, "Continuity memory saved.")
    return redirect("scene-detail", pk=scene.pk)
