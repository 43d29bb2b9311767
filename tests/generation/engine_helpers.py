"""Shared set-up for engine tests: a backend row for a fake ComfyUI, shipped templates, runners."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from generation.models import Backend, Job, WorkflowTemplate
from generation.services.reconcile import backend_refresh
from generation.services.templates import template_sync_shipped


def backend_for(fake: Any, name: str = "gpu-1", **fields: Any) -> Backend:
    backend = Backend.objects.create(name=name, url=fake.url if hasattr(fake, "url") else fake, **fields)
    backend_refresh(backend=backend, force_object_info=True)
    backend.refresh_from_db()
    return backend


def shipped(slug: str) -> WorkflowTemplate:
    if not WorkflowTemplate.objects.filter(slug=slug, project__isnull=True).exists():
        template_sync_shipped()
    return WorkflowTemplate.objects.get(slug=slug, project__isnull=True)


class Enqueued:
    """Stands in for django-q's broker: records job ids instead of pushing them to Redis."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self, job_id: int) -> None:
        self.ids.append(job_id)

    def take(self) -> list[int]:
        ids, self.ids = self.ids, []
        return ids


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # surfaced to the test through result
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def job(pk: int) -> Job:
    return Job.objects.get(pk=pk)
