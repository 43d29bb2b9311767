"""Continuity memory: what each scene remembers of its characters, its story and its look.

A scene's ``memory`` holds only the entries set on that scene::

    {"characters": {"12": {"outfit": "red coat", "facing": "left"}},
     "story": {"tension": 7, "story_beat": "the chase"},
     "style": {"lighting": "neon", "style_keywords": ["rain", "reflections"]}}

Everything a scene leaves unset is carried from the scenes before it in its episode, in order
(:func:`memory_effective`). :func:`memory_update` merges a patch into the scene's own entries (``null``
deletes one, so the carried value shows again) and records each changed path in a
:class:`~projects.models.SceneMemoryChange`. :func:`memory_prompt` is the text a job of the scene
carries in its resolved prompt. Bad input raises Django's ``ValidationError`` naming the path
(``{"memory": ["story.tension must be ..."]}``), which the API turns into a 400.
"""

from __future__ import annotations

import copy
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet

from projects.models import Scene, SceneMemoryChange
from projects.services import model_name_problem

TEXT_MAX = 500
SUMMARY_MAX = 4000
KEYWORDS_MAX = 50

# field -> kind: "text", "tension" (a number 0..10), "strength" (a number -5..5), "keywords" (list of texts),
# "lora" (a LoRA file name as ComfyUI lists it, or "" for none)
CHARACTER_FIELDS: dict[str, str] = {
    "outfit": "text",
    "hair": "text",
    "accessories": "text",
    "expression": "text",
    "pose": "text",
    "emotional_state": "text",
    "position": "text",
    "facing": "text",
}
STORY_FIELDS: dict[str, str] = {
    "plot_summary": "summary",
    "tension": "tension",
    "pacing": "text",
    "story_beat": "text",
    "music_mood": "text",
    "transition_in": "text",
    "transition_out": "text",
}
STYLE_FIELDS: dict[str, str] = {
    "lighting": "text",
    "colours": "text",
    "colour_temperature": "text",
    "camera_angle": "text",
    "camera_movement": "text",
    "depth_of_field": "text",
    "style_keywords": "keywords",
    "style_lora": "lora",
    "style_lora_strength": "strength",
}
SECTIONS: dict[str, dict[str, str]] = {"story": STORY_FIELDS, "style": STYLE_FIELDS}


def _value_problem(kind: str, value: Any) -> str | None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in ("text", "summary", "lora"):
        limit = SUMMARY_MAX if kind == "summary" else TEXT_MAX
        if not isinstance(value, str):
            return f"must be text, not {type(value).__name__}"
        if len(value) > limit:
            return f"must be at most {limit} characters"
        # A LoRA is a file on the backends: named like the style's LoRAs (no "..", no absolute path).
        return model_name_problem(value.strip()) if kind == "lora" and value.strip() else None
    if kind == "tension":
        return None if number and 0 <= value <= 10 else f"must be a number from 0 to 10, not {value!r}"
    if kind == "strength":
        return None if number and -5 <= value <= 5 else f"must be a number from -5 to 5, not {value!r}"
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= TEXT_MAX for v in value):
        return "must be a list of non-empty texts"
    return f"must have at most {KEYWORDS_MAX} keywords" if len(value) > KEYWORDS_MAX else None


def _fields_problems(where: str, data: Any, fields: dict[str, str], partial: bool) -> list[str]:
    if data is None and partial:
        return []
    if not isinstance(data, dict):
        return [f"{where} must be an object"]
    problems = []
    for key, value in data.items():
        path = f"{where}.{key}"
        if key not in fields:
            problems.append(f"{path} is not a memory entry (known: {', '.join(fields)})")
        elif value is None and partial:
            continue
        elif problem := _value_problem(fields[key], value):
            problems.append(f"{path} {problem}")
    return problems


def _problems(data: Any, *, partial: bool) -> list[str]:
    if not isinstance(data, dict):
        return ["memory must be an object with characters, story and style"]
    problems = []
    for section, value in data.items():
        if section == "characters":
            if value is None and partial:
                continue
            if not isinstance(value, dict):
                problems.append("characters must be an object of character id -> state")
                continue
            for key, state in value.items():
                if not (isinstance(key, str) and key.isdigit() and int(key) > 0):
                    problems.append(f"characters.{key} is not a character id")
                else:
                    problems.extend(_fields_problems(f"characters.{key}", state, CHARACTER_FIELDS, partial))
        elif section in SECTIONS:
            problems.extend(_fields_problems(section, value, SECTIONS[section], partial))
        else:
            problems.append(f"{section} is not a memory section (known: characters, story, style)")
    return problems


def memory_validate(data: Any) -> dict[str, Any]:
    """``data`` if it is a well-formed memory (see the module docstring); else ValidationError naming each path."""
    problems = _problems(data, partial=False)
    if problems:
        raise ValidationError({"memory": problems})
    return data


def _merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``patch`` deep-merged over a copy of ``base``: None deletes, an emptied object goes too."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
        if isinstance(out.get(key), dict) and not out[key]:
            del out[key]
    return out


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            leaves.update(_leaves(value, f"{path}."))
        else:
            leaves[path] = value
    return leaves


def _earlier_scenes(scene: Scene) -> QuerySet[Scene]:
    return Scene.objects.filter(episode_id=scene.episode_id, number__lt=scene.number).order_by("number")


def memory_effective(scene: Scene) -> dict[str, Any]:
    """The memory in force in ``scene``: the earlier scenes' entries of its episode in order, its own over them."""
    effective: dict[str, Any] = {}
    own = [s.memory for s in _earlier_scenes(scene).only("memory")] + [scene.memory]
    for memory in own:
        if isinstance(memory, dict):
            effective = _merged(effective, memory)
    return effective


def memory_carried(scene: Scene) -> dict[str, Any]:
    """What the earlier scenes leave to ``scene`` (its effective memory without its own entries)."""
    carried: dict[str, Any] = {}
    for earlier in _earlier_scenes(scene).only("memory"):
        if isinstance(earlier.memory, dict):
            carried = _merged(carried, earlier.memory)
    return carried


def memory_update(*, scene: Scene, user: Any, patch: Any) -> Scene:
    """Merge ``patch`` into the scene's own memory (``null`` deletes an entry) and record what changed.

    One :class:`SceneMemoryChange` lists each changed path with its old and new value (None: unset);
    a patch that changes nothing writes nothing. A character id must be one of the project's.
    """
    problems = _problems(patch, partial=True)
    if problems:
        raise ValidationError({"memory": problems})
    with transaction.atomic():
        locked = Scene.objects.select_for_update().select_related("episode").get(pk=scene.pk)
        ids = {int(k) for k, v in (patch.get("characters") or {}).items() if v is not None}
        if ids:
            known = set(locked.episode.project.characters.filter(pk__in=ids).values_list("pk", flat=True))
            missing = sorted(ids - known)
            if missing:
                raise ValidationError(
                    {"memory": [f"characters.{pk} is not a character of this project" for pk in missing]}
                )
        before = locked.memory if isinstance(locked.memory, dict) else {}
        after = _merged(before, patch)
        memory_validate(after)
        old, new = _leaves(before), _leaves(after)
        changes = [
            {"path": path, "old": old.get(path), "new": new.get(path)}
            for path in sorted(old.keys() | new.keys())
            if old.get(path) != new.get(path)
        ]
        if changes:
            locked.memory = after
            locked.save(update_fields=["memory", "updated_at"])
            SceneMemoryChange.objects.create(
                scene=locked, user=user if getattr(user, "pk", None) else None, changes=changes
            )
    scene.memory = locked.memory
    return scene


def memory_changes(scene: Scene) -> QuerySet[SceneMemoryChange]:
    """The scene's memory change log, newest first, with who made each change."""
    return SceneMemoryChange.objects.filter(scene=scene).select_related("user").order_by("-created_at", "-id")


def memory_style_lora(scene: Scene) -> dict[str, Any] | None:
    """The style LoRA the scene's effective memory names, as a LoRA entry ``{"name", "strength"}``
    (strength 1 when the memory sets none), or None. Its jobs load it (generation.services.resolve)."""
    style = memory_effective(scene).get("style") or {}
    name = style.get("style_lora")
    if not isinstance(name, str) or not name.strip():
        return None
    strength = style.get("style_lora_strength")
    if isinstance(strength, bool) or not isinstance(strength, int | float):
        strength = 1.0
    return {"name": name.strip(), "strength": float(strength)}


_LABELS = {
    "emotional_state": "emotional state",
    "plot_summary": "plot",
    "story_beat": "story beat",
    "music_mood": "music mood",
    "transition_in": "transition in",
    "transition_out": "transition out",
    "colour_temperature": "colour temperature",
    "camera_angle": "camera angle",
    "camera_movement": "camera movement",
    "depth_of_field": "depth of field",
}


def _clean(text: str) -> str:
    # The resolved prompt is a comma-separated tag list: a comma inside a value would split it.
    return " ".join(text.replace(",", ";").split())


def memory_prompt(scene: Scene, characters: Any = None) -> str:
    """The scene's effective memory as prompt text (comma-separated), for its segments' resolved prompts.

    ``characters`` (objects with ``pk`` and ``name``) limits the character states to those; by default
    the scene's own characters. Empty entries are left out; no memory gives "".
    """
    memory = memory_effective(scene)
    people = list(scene.characters.all()) if characters is None else list(characters)
    states = memory.get("characters") or {}
    tags: list[str] = []
    for person in sorted(people, key=lambda c: (c.name, c.pk)):
        state = states.get(str(person.pk)) or {}
        for field in CHARACTER_FIELDS:
            value = state.get(field)
            if isinstance(value, str) and value.strip():
                tags.append(f"{_clean(person.name)} {_LABELS.get(field, field)}: {_clean(value)}")
    for section, fields in SECTIONS.items():
        values = memory.get(section) or {}
        for field in fields:
            value = values.get(field)
            if field == "tension" and value is not None:
                tags.append(f"tension {value:g}/10")
            elif field == "style_keywords" and isinstance(value, list):
                tags.extend(_clean(v) for v in value if v.strip())
            elif field in ("style_lora", "style_lora_strength"):
                continue  # loaded as a LoRA by the resolver (memory_style_lora); as words it would only nudge the image
            elif isinstance(value, str) and value.strip():
                tags.append(f"{_LABELS.get(field, field)}: {_clean(value)}")
    return ", ".join(tags)
