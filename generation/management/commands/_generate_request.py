"""``manage.py generate``'s command line turned into a request: project, user, character parts and image inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError
from django.db.models import Q, QuerySet
from django.http import Http404

from characters.selectors import (
    characters_visible_to,
    primary_reference,
    references_visible_to,
    variations_visible_to,
    versions_visible_to,
)
from generation.models import WorkflowTemplate
from generation.selectors import assets_visible_to, templates_visible_to
from generation.services.inputs import IMAGE_PARAMETERS, input_image_create, template_image_inputs
from projects.models import Project
from projects.selectors import project_get_for_user

PRIMARY = "primary"  # --reference without an id


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON is taken as such (``steps=30`` is a number)."""
    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def _by_id_or_slug(queryset: QuerySet, ref: str) -> list[Any]:
    ref = str(ref).strip()
    return list(queryset.filter(pk=int(ref)) if ref.isdigit() else queryset.filter(slug=ref))[:2]


def project_by_ref(ref: str) -> Project:
    found = _by_id_or_slug(Project.objects.select_related("owner"), ref)
    if not found:
        raise CommandError(f"no project {ref!r} (give its id or slug)")
    return found[0]


def user_named(username: str | None, project: Project) -> User:
    if username is None:
        return project.owner
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"no user {username!r}")
    return user


def check_access(user: User, project: Project) -> None:
    try:
        project_get_for_user(user=user, pk=project.pk, write=True)
    except Http404:
        raise CommandError(f"user {user.get_username()!r} has no access to project {project.slug!r}") from None
    except PermissionDenied:
        raise CommandError(
            f"user {user.get_username()!r} has read-only access to project {project.slug!r}; "
            "generating needs its owner or an editor"
        ) from None


def character_parts(user: User, project: Project, options: dict[str, Any]) -> dict[str, int]:
    parts: dict[str, int] = {}
    character = None
    if options["character"]:
        found = _by_id_or_slug(characters_visible_to(user).filter(project=project), options["character"])
        if not found:
            raise CommandError(f"no character {options['character']!r} in project {project.slug!r}")
        character = found[0]
        parts["character"] = character.pk
    for option, key, queryset in (
        ("character_version", "version", versions_visible_to(user)),
        ("variation", "variation", variations_visible_to(user)),
    ):
        ref = options[option]
        if not ref:
            continue
        if character is None and not str(ref).isdigit():
            raise CommandError(f"--{key} by slug needs --character")
        scope = queryset.filter(character=character) if character else queryset.filter(character__project=project)
        found = _by_id_or_slug(scope, ref)
        where = f"character {character.slug!r}" if character else f"project {project.slug!r}"
        if not found:
            raise CommandError(f"no {key} {ref!r} for {where}")
        if len(found) > 1:
            raise CommandError(f"{key} {ref!r} is ambiguous for {where}; give its id")
        parts[key] = found[0].pk
    return parts


def _template(user: User, project: Project, ref: str) -> WorkflowTemplate:
    templates = templates_visible_to(user).filter(Q(project__isnull=True) | Q(project=project)).order_by("project")
    found = _by_id_or_slug(templates, ref)
    if not found:
        raise CommandError(no_template_message(user, project, ref))
    return found[0]


def image_parts(
    user: User, project: Project, options: dict[str, Any], data: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """``images`` of the request from --reference, --init-asset and --image (files stored first)."""
    if not (options["reference"] or options["init_asset"] is not None or options["images"]):
        return {}
    template = _template(user, project, str(options["template"]))
    inputs = template_image_inputs(template)
    if not inputs:
        raise CommandError(f"template {template.slug!r} takes no image input; choose one that does")
    images: dict[str, dict[str, int]] = {}

    def put(param: str, spec: dict[str, int], flag: str) -> None:
        if param not in inputs:
            raise CommandError(
                f"{flag}: template {template.slug!r} has no {param!r} input (it takes: {', '.join(inputs)})"
            )
        if param in images:
            raise CommandError(f"{flag}: {param!r} is given twice")
        images[param] = spec

    def first_free(flag: str) -> str:
        free = [p for p in inputs if p not in images]
        if not free:
            raise CommandError(f"{flag}: every image input of {template.slug!r} is already given")
        return free[0]

    if options["init_asset"] is not None:
        pk = options["init_asset"]
        if not assets_visible_to(user).filter(project=project, pk=pk).exists():
            raise CommandError(f"--init-asset {pk}: no output #{pk} in project {project.slug!r}")
        put("init_image", {"asset": pk}, "--init-asset")
    if options["reference"]:
        reference = _reference(user, project, options["reference"], data)
        param = "reference_image" if "reference_image" in inputs else first_free("--reference")
        put(param, {"reference": reference}, "--reference")
    for value in options["images"]:
        name, sep, rest = value.partition("=")
        named, path = (name, rest) if sep and name in IMAGE_PARAMETERS else (None, value)
        if named is None and sep and name.isidentifier() and not Path(value).exists():
            raise CommandError(f"--image {value}: no image input {name!r}; the image inputs are {', '.join(inputs)}")
        upload = _store_image(user, project, Path(path), flag=f"--image {value}")
        put(named or first_free(f"--image {value}"), {"upload": upload}, f"--image {value}")
    return images


def _reference(user: User, project: Project, ref: str, data: dict[str, Any]) -> int:
    if ref != PRIMARY:
        if not ref.isdigit():
            raise CommandError(f"--reference {ref}: give a reference image's id, or no value for the primary one")
        if not references_visible_to(user).filter(character__project=project, pk=int(ref)).exists():
            raise CommandError(f"--reference {ref}: no reference image #{ref} in project {project.slug!r}")
        return int(ref)
    if "character" not in data:
        raise CommandError("--reference without an id takes the character's primary reference: give --character")
    character = characters_visible_to(user).get(pk=data["character"])
    version = versions_visible_to(user).filter(pk=data["version"]).first() if data.get("version") else None
    reference = primary_reference(character, version)
    if reference is None:
        raise CommandError(f"--reference: character {character.slug!r} has no reference images yet; upload one first")
    return reference.pk


def _store_image(user: User, project: Project, path: Path, *, flag: str) -> int:
    if not path.is_file():
        raise CommandError(f"{flag}: no such file")
    try:
        with path.open("rb") as handle:
            image, _ = input_image_create(project=project, user=user, upload=handle, original_name=path.name)
    except OSError as exc:
        raise CommandError(f"{flag}: cannot read it ({exc.strerror or exc})") from None
    except ValidationError as exc:
        raise CommandError(f"{flag}: {'; '.join(exc.messages)}") from None
    return image.pk


def no_template_message(user: User, project: Project, ref: str) -> str:
    slugs = list(
        templates_visible_to(user)
        .filter(Q(project__isnull=True) | Q(project=project))
        .order_by("slug")
        .values_list("slug", flat=True)
    )
    if not slugs:
        return (
            f"no workflow template {ref!r}: none are loaded. Run `manage.py sync_workflows` "
            "(serve does it at start) or import one."
        )
    return f"no workflow template {ref!r} for project {project.slug!r}; available: {', '.join(slugs)}"
