"""Turning a validated API or page request into jobs: ids become rows the user may use."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q
from django.http import Http404

from characters.selectors import (
    characters_visible_to,
    references_visible_to,
    variations_visible_to,
    versions_visible_to,
)
from generation.models import Job
from generation.selectors import assets_visible_to, templates_visible_to
from generation.services.jobs import JobError
from generation.services.submit import init_image_from, jobs_create
from projects.selectors import project_get_for_user, scenes_visible_to


def _get(queryset: Any, pk: Any, what: str) -> Any:
    if pk is None:
        return None
    obj = queryset.filter(pk=pk).first()
    if obj is None:
        raise Http404(f"No such {what}")
    return obj


def submit_request(*, user: AbstractBaseUser, data: dict[str, Any]) -> list[Job]:
    project = project_get_for_user(user=user, pk=data["project"], write=True)
    ref = str(data["template"])
    templates = templates_visible_to(user).filter(Q(project__isnull=True) | Q(project=project))
    template = (
        (templates.filter(pk=int(ref)) if ref.isdigit() else templates.filter(slug=ref)).order_by("project").first()
    )
    if template is None:
        raise Http404("No such workflow template")
    init = None
    if data.get("init_asset") is not None and data.get("init_reference") is not None:
        raise JobError("give init_asset or init_reference, not both")
    if data.get("init_asset") is not None:
        init = init_image_from(_get(assets_visible_to(user).filter(project=project), data["init_asset"], "asset"))
    elif data.get("init_reference") is not None:
        ref_obj = _get(
            references_visible_to(user).filter(character__project=project), data["init_reference"], "reference"
        )
        init = init_image_from(ref_obj)
    return jobs_create(
        user=user,
        project=project,
        template=template,
        mode=data.get("mode", "draft"),
        character=_get(characters_visible_to(user).filter(project=project), data.get("character"), "character"),
        version=_get(versions_visible_to(user).filter(character__project=project), data.get("version"), "version"),
        variation=_get(
            variations_visible_to(user).filter(character__project=project), data.get("variation"), "variation"
        ),
        scene=_get(scenes_visible_to(user).filter(episode__project=project), data.get("scene"), "scene"),
        prompt=data.get("prompt", ""),
        negative=data.get("negative", ""),
        overrides=data.get("overrides") or {},
        seeds=data.get("seeds"),
        count=data.get("count"),
        grid=data.get("grid"),
        init_image=init,
    )
