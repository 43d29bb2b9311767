"""The scene page's continuity memory: every entry of the effective memory, whether it is carried from
the earlier scenes or set on this one, a form that edits this scene's own entries, and the change log.

The form posts one input per entry (``story.tension``, ``style.lighting``, ``characters.12.outfit``):
a filled input sets the entry on this scene, an emptied one unsets it (the carried value shows
again). Only the entries that differ from what the scene holds go to ``projects.memory.memory_update``
as a patch, which validates them and records who changed what; bad input changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from projects.memory import (
    CHARACTER_FIELDS,
    KEYWORDS_MAX,
    STORY_FIELDS,
    STYLE_FIELDS,
    SUMMARY_MAX,
    TEXT_MAX,
    memory_carried,
    memory_changes,
    memory_update,
)
from projects.models import Scene
from tower.core.pages import form_add_service_errors

CHANGES_SHOWN = 20


def _field(kind: str, label: str) -> forms.Field:
    if kind == "tension":
        return forms.FloatField(label=label, required=False, min_value=0, max_value=10, help_text="0–10")
    if kind == "strength":
        return forms.FloatField(label=label, required=False, min_value=-5, max_value=5)
    if kind == "summary":
        return forms.CharField(
            label=label, required=False, max_length=SUMMARY_MAX, widget=forms.Textarea(attrs={"rows": 2})
        )
    if kind == "keywords":
        return forms.CharField(
            label=label, required=False, max_length=KEYWORDS_MAX * (TEXT_MAX + 2), help_text="comma-separated"
        )
    return forms.CharField(label=label, required=False, max_length=TEXT_MAX)


def _label(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _shown(kind: str, value: Any) -> Any:
    """A stored value as its input shows it."""
    if value is None:
        return None
    if kind == "keywords" and isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if kind in ("tension", "strength") and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _stored(kind: str, value: Any) -> Any:
    """An input's cleaned value as memory stores it (None: not set on this scene)."""
    if value is None or value == "":
        return None
    if kind == "keywords":
        words = [w.strip() for w in str(value).split(",") if w.strip()]
        return words or None
    if kind in ("tension", "strength"):
        return int(value) if float(value).is_integer() else float(value)
    return str(value).strip() or None


@dataclass
class Entry:
    name: str  # the input's name: "story.tension"
    section: str
    kind: str
    own: Any  # set on this scene (None: not)
    carried: Any  # what the earlier scenes leave (None: nothing)


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


class MemoryForm(forms.Form):
    def __init__(self, *args: Any, scene: Scene, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        own = scene.memory if isinstance(scene.memory, dict) else {}
        carried = memory_carried(scene)
        self.entries: list[Entry] = []
        self.sections: list[tuple[str, list[tuple[forms.BoundField, Entry]]]] = []
        groups: list[tuple[str, list[str], dict[str, str]]] = [
            (f"{c.name}", ["characters", str(c.pk)], CHARACTER_FIELDS)
            for c in scene.characters.all().order_by("name", "pk")
        ]
        groups += [("Story", ["story"], STORY_FIELDS), ("Visual style", ["style"], STYLE_FIELDS)]
        for title, keys, fields in groups:
            for name, kind in fields.items():
                path = [*keys, name]
                entry = Entry(
                    ".".join(path), title, kind, _shown(kind, _get(own, *path)), _shown(kind, _get(carried, *path))
                )
                field = _field(kind, _label(name))
                field.initial = entry.own
                if entry.carried is not None:
                    field.widget.attrs["placeholder"] = f"carried: {entry.carried}"
                self.fields[entry.name] = field
                self.entries.append(entry)
        for title in dict.fromkeys(e.section for e in self.entries):
            rows = [(self[e.name], e) for e in self.entries if e.section == title]
            self.sections.append((title, rows))

    def patch(self) -> dict[str, Any]:
        """The entries whose value differs from the scene's own, as a memory patch (None unsets one)."""
        patch: dict[str, Any] = {}
        for entry in self.entries:
            new = _stored(entry.kind, self.cleaned_data.get(entry.name))
            old = _stored(entry.kind, entry.own)
            if new == old:
                continue
            target = patch
            *parents, leaf = entry.name.split(".")
            for key in parents:
                target = target.setdefault(key, {})
            target[leaf] = new
        return patch


def memory_context(*, scene: Scene, form: MemoryForm | None = None) -> dict[str, Any]:
    """The memory card: the form (with each entry's carried value) and the newest changes."""
    return {
        "memory_form": form or MemoryForm(scene=scene),
        "memory_changes": list(memory_changes(scene)[:CHANGES_SHOWN]),
    }


def memory_form_save(*, scene: Scene, data: Any, user: User) -> tuple[MemoryForm, bool]:
    """Validate the posted form and save its changes through ``memory_update``; (form, saved)."""
    form = MemoryForm(data, scene=scene)
    if not form.is_valid():
        return form, False
    try:
        memory_update(scene=scene, user=user, patch=form.patch())
    except ValidationError as exc:
        form_add_service_errors(form, exc)
        return form, False
    return form, True
