"""Writes for projects, their style, members, episodes and scenes."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils.text import slugify

from projects.models import (
    DEFAULT_PHASE_TEMPLATES,
    MAX_REGENERATIONS,
    Episode,
    GenerationStyle,
    MemberRole,
    Membership,
    Project,
    Scene,
)
from tower.core.errors import DomainError
from tower.core.files import delete_files_after_commit, files_of_cascade

STYLE_FIELDS = frozenset(
    {
        "checkpoint",
        "vae",
        "sampler",
        "scheduler",
        "width",
        "height",
        "style_prompt",
        "negative_prompt",
        "loras",
        "clip_skip",
        "fps",
        "draft_steps",
        "draft_cfg",
        "draft_denoise",
        "production_steps",
        "production_cfg",
        "production_denoise",
    }
)
PROJECT_FIELDS = frozenset(
    {
        "name",
        "slug",
        "description",
        "art_kind",
        "story_bible",
        "threshold_similarity",
        "threshold_aesthetic",
        "threshold_temporal",
        "threshold_motion",
        "phase_pass_ratio",
        "phase_window",
        "max_regenerations",
        "advance_unevaluated",
        "threshold_palette",
        "threshold_face_quality",
        "threshold_overall",
        "sheet_poses",
        "phase_templates",
    }
)
STORY_BIBLE_KEYS = {"premise": str, "tone": str, "world": str, "episode_outline": list, "notes": str, "themes": list}


class ProjectError(DomainError):
    """A project operation cannot be done as asked."""


def unique_slug(
    model: type[models.Model], base: str, *, scope: dict[str, Any] | None = None, max_length: int = 80
) -> str:
    """``base`` slugified, with ``-2``, ``-3``… appended until unique within ``scope``."""
    root = (slugify(base) or "item")[: max_length - 6]
    candidate, n = root, 1
    query = model._default_manager.filter(**(scope or {}))
    while query.filter(slug=candidate).exists():
        n += 1
        candidate = f"{root}-{n}"
    return candidate


def validate_story_bible(bible: Any) -> dict[str, Any]:
    if not isinstance(bible, dict):
        raise ValidationError({"story_bible": "must be an object"})
    errors = {}
    for key, expected in STORY_BIBLE_KEYS.items():
        if key in bible and not isinstance(bible[key], expected):
            errors[key] = f"must be a {'list' if expected is list else 'string'}"
    if errors:
        raise ValidationError({"story_bible": [f"{k} {v}" for k, v in errors.items()]})
    return bible


MODEL_NAME_FIELDS = ("checkpoint", "vae")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def model_name_problem(name: str) -> str | None:
    """Why ``name`` is not a model name as ComfyUI lists it, or None.

    A model name is a file name under one of ComfyUI's model folders, optionally in subfolders:
    ``SD1.5/model.safetensors`` (and ``SD1.5\\model.safetensors`` from a Windows server, which
    lists them with backslashes). It is never absolute, never climbs out (``..``), and holds no
    NUL or control characters; ComfyUI refuses such names too, but they must not reach it.
    """
    if _CONTROL.search(name):
        return "must not contain control characters"
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "must be a name as ComfyUI lists it (subfolder/file), not an absolute path"
    segments = re.split(r"[/\\]", name)
    if any(segment in {"", ".", ".."} for segment in segments):
        return "must be a name as ComfyUI lists it (subfolder/file), without '..' or empty parts"
    return None


def validate_model_names(fields: dict[str, Any]) -> None:
    errors = {
        key: problem
        for key in MODEL_NAME_FIELDS
        if isinstance(fields.get(key), str) and fields[key] and (problem := model_name_problem(fields[key]))
    }
    if errors:
        raise ValidationError(errors)


def validate_max_regenerations(fields: dict[str, Any]) -> None:
    value = fields.get("max_regenerations")
    if value is not None and not (isinstance(value, int) and 0 <= value <= MAX_REGENERATIONS):
        raise ValidationError({"max_regenerations": f"must be a whole number from 0 to {MAX_REGENERATIONS}"})


def validate_loras(loras: Any) -> list[dict[str, Any]]:
    if not isinstance(loras, list):
        raise ValidationError({"loras": "must be a list of {name, strength}"})
    for i, item in enumerate(loras):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
            raise ValidationError({"loras": f"item {i} needs a non-empty 'name'"})
        if problem := model_name_problem(item["name"]):
            raise ValidationError({"loras": f"item {i} name {problem}"})
        strength = item.get("strength", 1.0)
        if isinstance(strength, bool) or not isinstance(strength, int | float) or not -5 <= strength <= 5:
            raise ValidationError({"loras": f"item {i} strength must be a number between -5 and 5"})
    return loras


# Each production threshold's range (the model's check constraints), said in the unit a person sets.
THRESHOLD_RANGES = {
    "threshold_palette": (0.0, 100.0, "a mean ΔE (Lab) from 0 to 100"),
    "threshold_face_quality": (0.0, 1.0, "a number from 0 to 1"),
    "threshold_overall": (0.0, 1.0, "a number from 0 to 1"),
}
# A sheet draws one panel per pose (4 columns): 16 poses make a 4×4 grid, already small panels.
SHEET_POSES_MAX = 16
POSE_MAX_LENGTH = 200
PHASE_TEMPLATE_KEYS = tuple(DEFAULT_PHASE_TEMPLATES)  # sheet, loop, video
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,80}")


def validate_thresholds(fields: dict[str, Any]) -> None:
    errors = {}
    for key, (low, high, what) in THRESHOLD_RANGES.items():
        if key not in fields:
            continue
        value = fields[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            errors[key] = f"must be {what}"
    if errors:
        raise ValidationError(errors)


def validate_sheet_poses(poses: Any) -> list[str]:
    """The poses trimmed; refused unless 1..SHEET_POSES_MAX non-empty texts of at most POSE_MAX_LENGTH."""
    if not isinstance(poses, list) or not all(isinstance(pose, str) for pose in poses):
        raise ValidationError({"sheet_poses": "must be a list of pose descriptions (texts)"})
    trimmed = [pose.strip() for pose in poses]
    if not 1 <= len(trimmed) <= SHEET_POSES_MAX:
        raise ValidationError(
            {"sheet_poses": f"give from 1 to {SHEET_POSES_MAX} poses (one sheet panel each), not {len(trimmed)}"}
        )
    for n, pose in enumerate(trimmed, start=1):
        if not pose:
            raise ValidationError({"sheet_poses": f"pose {n} is empty"})
        if len(pose) > POSE_MAX_LENGTH:
            raise ValidationError({"sheet_poses": f"pose {n} is longer than {POSE_MAX_LENGTH} characters"})
    return trimmed


def validate_phase_templates(templates: Any) -> dict[str, str]:
    """The slugs trimmed. Only their shape is checked: projects may not import generation, so
    whether a slug names a template of the phase's kind is checked when an orchestration starts."""
    keys = ", ".join(map(repr, PHASE_TEMPLATE_KEYS))
    if not isinstance(templates, dict):
        raise ValidationError({"phase_templates": f"must be an object with the keys {keys}: template slugs"})
    unknown = sorted(set(map(str, templates)) - set(PHASE_TEMPLATE_KEYS))
    if unknown:
        raise ValidationError(
            {"phase_templates": f"unknown key(s) {', '.join(map(repr, unknown))}: only {keys} are phases"}
        )
    cleaned = {}
    for key in PHASE_TEMPLATE_KEYS:
        if key not in templates:
            continue  # that phase follows the default (DEFAULT_PHASE_TEMPLATES)
        slug = templates[key]
        if not isinstance(slug, str) or not _SLUG.fullmatch(slug.strip()):
            raise ValidationError(
                {"phase_templates": f"{key} must be a workflow template's slug (letters, digits, '-', '_')"}
            )
        cleaned[key] = slug.strip()
    return cleaned


def _validate_project_fields(fields: dict[str, Any]) -> None:
    """Checks the model cannot say clearly; normalizes poses and template slugs in ``fields``."""
    if "story_bible" in fields:
        validate_story_bible(fields["story_bible"])
    validate_max_regenerations(fields)
    validate_thresholds(fields)
    if "sheet_poses" in fields:
        fields["sheet_poses"] = validate_sheet_poses(fields["sheet_poses"])
    if "phase_templates" in fields:
        fields["phase_templates"] = validate_phase_templates(fields["phase_templates"])


@transaction.atomic
def project_create(*, owner: User, name: str, **fields: Any) -> Project:
    unknown = set(fields) - PROJECT_FIELDS
    if unknown:
        raise ProjectError(f"unknown project fields: {', '.join(sorted(unknown))}")
    _validate_project_fields(fields)
    slug = fields.pop("slug", None) or unique_slug(Project, name)
    project = Project(owner=owner, name=name, slug=slug, **fields)
    project.full_clean()
    project.save()
    style = GenerationStyle(project=project)
    style.full_clean()
    style.save()
    return project


@transaction.atomic
def project_update(*, project: Project, **fields: Any) -> Project:
    unknown = set(fields) - PROJECT_FIELDS
    if unknown:
        raise ProjectError(f"unknown project fields: {', '.join(sorted(unknown))}")
    _validate_project_fields(fields)
    for key, value in fields.items():
        setattr(project, key, value)
    project.full_clean()
    project.save(update_fields=[*fields, "updated_at"])
    return project


@transaction.atomic
def style_update(*, project: Project, **fields: Any) -> GenerationStyle:
    unknown = set(fields) - STYLE_FIELDS
    if unknown:
        raise ProjectError(f"unknown style fields: {', '.join(sorted(unknown))}")
    if "loras" in fields:
        validate_loras(fields["loras"])
    validate_model_names(fields)
    style = GenerationStyle.objects.select_for_update().get(project=project)
    for key, value in fields.items():
        setattr(style, key, value)
    if style.width % 8 or style.height % 8:
        raise ValidationError({"width": "width and height must be multiples of 8"})
    style.full_clean()
    style.save(update_fields=[*fields, "updated_at"])
    return style


@transaction.atomic
def project_member_set(*, project: Project, username: str, role: str = MemberRole.EDITOR) -> Membership:
    if role not in MemberRole.values:
        raise ValidationError({"role": f"must be one of {', '.join(MemberRole.values)}"})
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationError({"username": "no active user with this name"})
    if user.pk == project.owner_id:
        raise ValidationError({"username": "the owner is already in the project"})
    membership, _ = Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return membership


@transaction.atomic
def project_member_remove(*, project: Project, user_id: int) -> None:
    deleted, _ = Membership.objects.filter(project=project, user_id=user_id).delete()
    if not deleted:
        raise ProjectError("that user is not a member of this project")


@transaction.atomic
def episode_create(*, project: Project, title: str, number: int | None = None, synopsis: str = "") -> Episode:
    if number is None:
        last = project.episodes.order_by("-number").values_list("number", flat=True).first()
        number = (last or 0) + 1
    episode = Episode(project=project, title=title, number=number, synopsis=synopsis)
    episode.full_clean()
    episode.save()
    return episode


@transaction.atomic
def scene_create(*, episode: Episode, number: int | None = None, **fields: Any) -> Scene:
    if number is None:
        last = episode.scenes.order_by("-number").values_list("number", flat=True).first()
        number = (last or 0) + 1
    scene = Scene(episode=episode, number=number, **fields)
    scene.full_clean()
    scene.save()
    return scene


@transaction.atomic
def project_delete(*, project: Project) -> None:
    """Delete the project and everything in it (episodes, scenes, characters, jobs, assets),
    and, once that has committed, every file those rows stored."""
    files = files_of_cascade([project])
    project.delete()
    delete_files_after_commit(files)


EPISODE_FIELDS = frozenset({"number", "title", "synopsis"})
SCENE_FIELDS = frozenset(
    {
        "number",
        "title",
        "description",
        "mood",
        "camera",
        "lighting",
        "duration_seconds",
        "continuity",
    }
)


@transaction.atomic
def episode_update(*, episode: Episode, **fields: Any) -> Episode:
    unknown = set(fields) - EPISODE_FIELDS
    if unknown:
        raise ProjectError(f"unknown episode fields: {', '.join(sorted(unknown))}")
    for key, value in fields.items():
        setattr(episode, key, value)
    episode.full_clean()
    episode.save(update_fields=list(fields))
    return episode


@transaction.atomic
def episode_delete(*, episode: Episode) -> None:
    files = files_of_cascade([episode])
    episode.delete()
    delete_files_after_commit(files)


@transaction.atomic
def scene_update(*, scene: Scene, **fields: Any) -> Scene:
    unknown = set(fields) - SCENE_FIELDS
    if unknown:
        raise ProjectError(f"unknown scene fields: {', '.join(sorted(unknown))}")
    if "continuity" in fields and not isinstance(fields["continuity"], dict):
        raise ValidationError({"continuity": "must be an object"})
    for key, value in fields.items():
        setattr(scene, key, value)
    scene.full_clean()
    scene.save(update_fields=list(fields))
    return scene


@transaction.atomic
def scene_delete(*, scene: Scene) -> None:
    scene.delete()
