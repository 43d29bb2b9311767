"""Bulk auto-captioning runs: started from the page, executed by a django-q2 task, polled by the page.

A run's state (queued → running → succeeded | failed, images done of total, the final report) is
a small JSON file per character under ``MEDIA_ROOT/caption-runs/``: the dataset schema is shared
and has no row for a bulk run, and the media folder is what the web process and every worker
already share. Writes are atomic (write, then rename); a task claims its run with an exclusive
create of a claim file, so a re-delivered task never captions twice. One run per character at a
time; a run whose worker died is considered stale after a bound and can be replaced.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from characters.models import Character
from training.llm.captions import CAPTION_METHODS, CAPTION_STYLES, AutoCaptionReport, captions_auto
from training.models import DatasetImage, ReviewStatus

ACTIVE = ("queued", "running")
RUNS_DIR = "caption-runs"


def _path(character_id: int) -> Path:
    return Path(settings.MEDIA_ROOT) / RUNS_DIR / f"character-{int(character_id)}.json"


def stale_after_seconds() -> float:
    """A run that has not moved for this long lost its worker (one slow LLM answer plus slack)."""
    return float(settings.TOWER_LLM_TIMEOUT) * 3 + 120


def caption_run_get(*, character_id: int) -> dict[str, Any] | None:
    """The character's latest run, with ``stale`` set when an active run stopped moving."""
    try:
        state = json.loads(_path(character_id).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    updated = datetime.fromisoformat(state.get("updated_at") or "1970-01-01T00:00:00+00:00")
    state["stale"] = state.get("status") in ACTIVE and (timezone.now() - updated).total_seconds() > (
        stale_after_seconds()
    )
    state["active"] = state.get("status") in ACTIVE and not state["stale"]
    return state


def _write(character_id: int, state: dict[str, Any]) -> None:
    path = _path(character_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in state.items() if k not in ("stale", "active")}
    state["updated_at"] = timezone.now().isoformat()
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def caption_run_start(
    *,
    character: Character,
    method: str,
    style: str = "tags",
    statuses: Sequence[str] = (ReviewStatus.APPROVED,),
    overwrite: bool = False,
    user: AbstractBaseUser | AnonymousUser | None = None,
    enqueue: Callable[[int, str], None] | None = None,
) -> dict[str, Any]:
    """Queue a run captioning the character's images (by status); the task starts after commit."""
    if method not in CAPTION_METHODS:
        raise ValidationError({"method": f"choose one of {', '.join(CAPTION_METHODS)}"})
    if style not in CAPTION_STYLES:
        raise ValidationError({"style": f"choose one of {', '.join(CAPTION_STYLES)}"})
    unknown = set(statuses) - set(ReviewStatus.values)
    if unknown:
        raise ValidationError({"status": f"unknown status: {', '.join(sorted(unknown))}"})
    if method == "llm" and not settings.TOWER_LLM_BASE_URL:
        raise ValidationError({"method": "no vision LLM is configured (TOWER_LLM_BASE_URL); caption from tags instead"})
    current = caption_run_get(character_id=character.pk)
    if current and current["active"]:
        raise ValidationError(
            f"a caption run is already {current['status']} for {character.name} "
            f"({current.get('done', 0)} of {current.get('total', 0)} images)"
        )
    total = DatasetImage.objects.filter(character=character, status__in=list(statuses)).count()
    if not total:
        raise ValidationError(f"{character.name} has no {' or '.join(statuses)} images to caption")
    state = {
        "run_id": uuid.uuid4().hex,
        "status": "queued",
        "method": method,
        "style": style,
        "statuses": list(statuses),
        "overwrite": overwrite,
        "done": 0,
        "total": total,
        "report": {},
        "error": "",
        "created_by": getattr(user, "username", "") or "",
        "created_at": timezone.now().isoformat(),
    }
    _write(character.pk, state)
    if enqueue is None:
        from training.llm.tasks import enqueue_caption_run as enqueue
    run_id = state["run_id"]
    transaction.on_commit(lambda: enqueue(character.pk, run_id))
    return caption_run_get(character_id=character.pk) or state


def caption_run_execute(*, character_id: int, run_id: str) -> str:
    """Run a queued caption run once (the claim file makes a re-delivered task a no-op)."""
    state = caption_run_get(character_id=character_id)
    if state is None or state.get("run_id") != run_id:
        return "superseded"
    if state.get("status") != "queued":
        return f"already {state.get('status')}"
    claim = _path(character_id).with_name(f"character-{int(character_id)}.{run_id}.claim")
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return "already claimed"
    try:
        return _execute(character_id, state)
    finally:
        claim.unlink(missing_ok=True)


def _execute(character_id: int, state: dict[str, Any]) -> str:
    state.update(status="running", started_at=timezone.now().isoformat())
    _write(character_id, state)

    def progress(report: AutoCaptionReport) -> None:
        state.update(done=report.captioned + report.skipped + report.failed, total=report.total)
        _write(character_id, state)

    try:
        character = Character.objects.get(pk=character_id)
        report = captions_auto(
            character=character,
            method=state["method"],
            style=state["style"],
            statuses=state["statuses"],
            overwrite=state["overwrite"],
            progress=progress,
        )
    except (Character.DoesNotExist, ValidationError) as exc:
        messages = exc.messages if isinstance(exc, ValidationError) else ["the character was deleted"]
        state.update(status="failed", error="; ".join(messages), finished_at=timezone.now().isoformat())
        _write(character_id, state)
        return "failed"
    except BaseException as exc:  # record why, then let the worker log it
        state.update(status="failed", error=f"captioning stopped: {exc}", finished_at=timezone.now().isoformat())
        _write(character_id, state)
        raise
    failed_all = report.total and report.failed == report.total
    state.update(
        status="failed" if failed_all else "succeeded",
        done=report.total,
        total=report.total,
        report=report.as_dict(),
        error=report.errors[0] if failed_all and report.errors else "",
        finished_at=timezone.now().isoformat(),
    )
    _write(character_id, state)
    return str(state["status"])


def llm_configured() -> bool:
    return bool(settings.TOWER_LLM_BASE_URL)
