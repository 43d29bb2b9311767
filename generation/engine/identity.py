"""Who is driving a job: ``host:pid`` of the worker process, so a dead owner can be recognised."""

from __future__ import annotations

import os

from django.conf import settings


def worker_name() -> str:
    return f"{settings.TOWER_WORKER_HOST}:{os.getpid()}"


def owner_is_dead(owner: str) -> bool:
    """True only when the owner ran on this host and its process is gone (other hosts: unknown,
    their orphans are adopted once their heartbeat is stale)."""
    host, _, pid = owner.rpartition(":")
    if host != settings.TOWER_WORKER_HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
