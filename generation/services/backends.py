"""Writes for ComfyUI backends made by people (the health poller owns the machine fields).

A backend added, re-pointed or enabled is checked at once (after the commit), so the studio shows
whether it is reachable now instead of "down" until the next minute's poll.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from generation.models import Backend
from tower.core.errors import DomainError

logger = logging.getLogger(__name__)

EDITABLE_FIELDS = ("name", "url", "enabled", "max_in_flight", "vram_hold_threshold")


class BackendError(DomainError):
    """A backend change that cannot be made (the message says why)."""


def backend_check(*, backend_id: int) -> bool:
    """Poll the backend now (``/system_stats`` and ``/object_info``) and store its health; True if up."""
    from generation.services.reconcile import backend_refresh  # reconcile imports the engine's client

    backend = Backend.objects.filter(pk=backend_id).first()
    if backend is None:
        raise BackendError("No such backend")
    return backend_refresh(backend=backend, force_object_info=True)


def backend_check_after_commit(backend_id: int) -> None:
    """Check the backend once the current transaction commits (a failed check is only logged)."""

    def check() -> None:
        try:
            backend_check(backend_id=backend_id)
        except Exception:  # the poller tries again within a minute; the change itself stands
            logger.warning("checking backend %s after a change failed", backend_id, exc_info=True)

    transaction.on_commit(check)


@transaction.atomic
def backend_create(
    *, name: str, url: str, enabled: bool = True, max_in_flight: int = 2, vram_hold_threshold: float = 0.80
) -> Backend:
    backend = Backend(
        name=name, url=url, enabled=enabled, max_in_flight=max_in_flight, vram_hold_threshold=vram_hold_threshold
    )
    backend.full_clean()
    backend.save()
    backend_check_after_commit(backend.pk)
    return backend


@transaction.atomic
def backend_update(*, backend: Backend, **fields: object) -> Backend:
    """Change the editable fields; a new URL, or enabling, is checked at once after the commit."""
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise BackendError(f"not editable: {', '.join(sorted(unknown))}")
    recheck = fields.get("url", backend.url) != backend.url or (fields.get("enabled") and not backend.enabled)
    for name, value in fields.items():
        setattr(backend, name, value)
    backend.full_clean()
    backend.save(update_fields=[*fields])
    if recheck:
        backend_check_after_commit(backend.pk)
    return backend


@transaction.atomic
def backends_set_enabled(*, backend_ids: Iterable[int], enabled: bool) -> int:
    """Enable or disable backends; returns how many changed (those already so are left alone).

    A disabled backend receives no new work; prompts already on it finish there. One enabled is
    checked at once.
    """
    ids = list(Backend.objects.filter(pk__in=list(backend_ids)).exclude(enabled=enabled).values_list("pk", flat=True))
    changed = Backend.objects.filter(pk__in=ids).update(enabled=enabled)
    if enabled:
        for backend_id in ids:
            backend_check_after_commit(backend_id)
    return changed
