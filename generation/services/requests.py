"""Turning a validated API or page request into jobs: ids become rows the user may use."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import Q
from django.http import Http404

from characters.selectors import (
    characters_visible_to,
    primary_reference,
    references_visible_to,
    variations_visible_to,
    versions_visible_to,
)
from generation.models import AssetKind, Job
from generation.selectors import assets_visible_to, input_images_visible_to, templates_visible_to
from generation.services.inputs import IMAGE_PARAMETERS, ImageSource, image_source_from
from generation.services.jobs import JobError
from generation.services.submit import jobs_create
from projects.models import Project
from projects.selectors import project_get_for_user, scenes_visible_to

# Where an image input's file comes from: {"reference": ID} and so on.
IMAGE_SOURCE_KINDS = ("reference", "version", "asset", "upload")
MAX_ID = 2**63 - 1


def _get(queryset: Any, pk: Any, what: str) -> Any:
    if pk is None:
        return None
    obj = queryset.filter(pk=pk).first()
    if obj is None:
        raise Http404(f"No such {what}")
    return obj


def image_spec_problem(param: Any, spec: Any) -> str | None:
    """Why ``images[param] = spec`` is not a well-formed image choice (None when it is)."""
    if param not in IMAGE_PARAMETERS:
        return f"unknown image input {param!r}; the image inputs are {', '.join(IMAGE_PARAMETERS)}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in IMAGE_SOURCE_KINDS:
        return (
            f'images.{param} takes exactly one of {", ".join(IMAGE_SOURCE_KINDS)} with an id, e.g. {{"reference": 3}}'
        )
    pk = next(iter(spec.values()))
    if isinstance(pk, bool) or not isinstance(pk, int) or not 0 < pk <= MAX_ID:
        return f"images.{param}.{next(iter(spec))} must be a positive whole number (an id)"
    return None


def _image_source(user: User, project: Project, param: str, spec: Any) -> ImageSource:
    problem = image_spec_problem(param, spec)
    if problem:
        raise JobError(problem)
    [(kind, pk)] = spec.items()
    if kind == "reference":
        obj: Any = _get(references_visible_to(user).filter(character__project=project), pk, "reference")
    elif kind == "version":
        version = _get(versions_visible_to(user).filter(character__project=project), pk, "version")
        obj = primary_reference(version.character, version)
        if obj is None:
            raise JobError(f"images.{param}: version {pk} and its character have no reference images yet")
    elif kind == "asset":
        obj = _get(assets_visible_to(user).filter(project=project), pk, "asset")
        if obj.kind == AssetKind.VIDEO:
            raise JobError(f"images.{param}: asset {pk} is a video; an image input takes an image or animation")
    else:
        obj = _get(input_images_visible_to(user).filter(project=project), pk, "input image")
    return image_source_from(obj)


def _images(user: User, project: Project, data: dict[str, Any]) -> dict[str, ImageSource]:
    """The request's image inputs; ``init_asset`` / ``init_reference`` are short for ``images.init_image``."""
    given = data.get("images") or {}
    if not isinstance(given, dict):
        raise JobError('images must be an object: {"init_image": {"asset": 12}, …}')
    specs = dict(given)
    shorthands = [key for key in ("init_asset", "init_reference") if data.get(key) is not None]
    if len(shorthands) > 1 or (shorthands and "init_image" in specs):
        raise JobError("give the init image once: init_asset, init_reference or images.init_image")
    if shorthands:
        key = shorthands[0]
        specs["init_image"] = {key.removeprefix("init_"): data[key]}
    return {param: _image_source(user, project, param, spec) for param, spec in specs.items()}


def submit_request(*, user: User, data: dict[str, Any]) -> list[Job]:
    project = project_get_for_user(user=user, pk=data["project"], write=True)
    ref = str(data["template"])
    templates = templates_visible_to(user).filter(Q(project__isnull=True) | Q(project=project))
    template = (
        (templates.filter(pk=int(ref)) if ref.isdigit() else templates.filter(slug=ref)).order_by("project").first()
    )
    if template is None:
        raise Http404("No such workflow template")
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
        images=_images(user, project, data),
        force_reason=data.get("force_reason") or "",
    )
