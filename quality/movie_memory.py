"""The scene page's continuity memory: the effective memory (carried or set here), its form and its log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User

from projects.models import Scene


class MemoryForm(forms.Form):
    pass


def memory_context(*, scene: Scene, form: Any = None) -> dict[str, Any]:
    return {"memory_form": form or MemoryForm(), "memory_changes": list(scene.memory_changes.all()[:20])}


def memory_form_save(*, scene: Scene, data: Any, user: User) -> tuple[MemoryForm, bool]:
    return MemoryForm(data), False
