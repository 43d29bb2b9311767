"""Writes for ComfyUI backends made by people (the health poller owns the machine fields)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from generation.models import Backend


@transaction.atomic
def backends_set_enabled(*, backend_ids: Iterable[int], enabled: bool) -> int:
    """Enable or disable backends; returns how many changed (those already so are left alone).

    A disabled backend receives no new work; prompts already on it finish there.
    """
    return Backend.objects.filter(pk__in=list(backend_ids)).exclude(enabled=enabled).update(enabled=enabled)
