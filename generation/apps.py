from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _reconcile_on_worker_start(sender: Any, proc_name: str = "", **kwargs: Any) -> None:
    """A worker process (re)started: adopt jobs a killed predecessor left running, at once.

    django-q2 sends ``post_spawn`` inside each new worker process, including the one that replaces
    a worker killed mid-job, so orphans are found in seconds rather than at the next schedule.
    """
    from generation.tasks import enqueue_reconcile

    enqueue_reconcile()


def _flush_events_after_task(sender: Any, **kwargs: Any) -> None:
    """A task's events are out when the task is reported done (events are sent in the background)."""
    from generation import events

    events.flush()


class GenerationConfig(AppConfig):
    name = "generation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_q.signals import post_execute_in_worker, post_spawn

        post_spawn.connect(_reconcile_on_worker_start, dispatch_uid="tower-reconcile-on-spawn")
        post_execute_in_worker.connect(_flush_events_after_task, dispatch_uid="tower-flush-events")
