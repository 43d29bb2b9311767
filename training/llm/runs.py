"""Bulk auto-captioning runs: started from the page, executed by a django-q2 task, polled by the page.

A run is a :class:`training.models.CaptionRun` row (queued → running → succeeded | failed, images
done of total, the final report); the functions here hand it around as a plain dict. A task claims
its run with a conditional update, so a re-delivered task never captions twice. One run per
character at a time; a run whose worker died is considered stale after a bound and can be replaced.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from characters.models import Character
from training.llm.captions import CAPTION_METHODS, CAPTION_STYLES, AutoCaptionReport, captions_auto
from training.models import CaptionRun, CaptionRunStatus, DatasetImage, ReviewStatus

ACTIVE = (CaptionRunStatus.QUEUED, CaptionRunStatus.RUNNING)
_FIELDS = ("status", "method", "style", "statuses", "overwrite", "done", "total", "report", "error")


def stale_after_seconds() -> float:
    """A run that has not moved for this long lost its worker (one slow LLM answer plus slack)."""
    return float(settings.TOWER_LLM_TIMEOUT) * 3 + 120


def _as_dict(run: CaptionRun) -> dict[str, Any]:
    state: dict[str, Any] = {name: getattr(run, name) for name in _FIELDS}
    state.update(
        run_id=run.run_id,
        created_by=run.created_by.get_username() if run.created_by_id and run.created_by else "",
        created_at=run.created_at.isoformat() if run.created_at else "",
        started_at=run.started_at.isoformat() if run.started_at else "",
        finished_at=run.finished_at.isoformat() if run.finished_at else "",
        updated_at=run.updated_at.isoformat(),
    )
    state["stale"] = run.status in ACTIVE and (timezone.now() - run.updated_at).total_seconds() > (
        stale_after_seconds()
    )
    state["active"] = run.status in ACTIVE and not state["stale"]
    return state


def caption_run_get(*, character_id: int) -> dict[str, Any] | None:
    """The character's latest run, with ``stale`` set when an active run stopped moving."""
    run = CaptionRun.objects.filter(character_id=character_id).select_related("created_by").first()
    return _as_dict(run) if run else None


def _write(character_id: int, state: dict[str, Any]) -> None:
    """Store ``state`` (progress, outcome) on the run it names."""
    values = {name: state[name] for name in _FIELDS if name in state}
    for stamp in ("started_at", "finished_at"):
        if state.get(stamp):
            values[stamp] = state[stamp]
    CaptionRun.objects.filter(character_id=character_id, run_id=state["run_id"]).update(
        **values, updated_at=timezone.now()
    )


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
    with transaction.atomic():
        # One run per character at a time: two clicks racing each other queue one run.
        Character.objects.select_for_update().filter(pk=character.pk).first()
        current = caption_run_get(character_id=character.pk)
        if current and current["active"]:
            raise ValidationError(
                f"a caption run is already {current['status']} for {character.name} "
                f"({current.get('done', 0)} of {current.get('total', 0)} images)"
            )
        total = DatasetImage.objects.filter(character=character, status__in=list(statuses)).count()
        if not total:
            raise ValidationError(f"{character.name} has no {' or '.join(statuses)} images to caption")
        run = CaptionRun.objects.create(
            character=character,
            run_id=uuid.uuid4().hex,
            method=method,
            style=style,
            statuses=list(statuses),
            overwrite=overwrite,
            total=total,
            created_by=user if isinstance(user, User) else None,
        )
    state = _as_dict(run)
    if enqueue is None:
        from training.llm.tasks import enqueue_caption_run

        enqueue = enqueue_caption_run
    run_id = run.run_id
    transaction.on_commit(lambda: enqueue(character.pk, run_id))
    return state


def caption_run_execute(*, character_id: int, run_id: str) -> str:
    """Run a queued caption run once (the conditional claim makes a re-delivered task a no-op)."""
    state = caption_run_get(character_id=character_id)
    if state is None or state.get("run_id") != run_id:
        return "superseded"
    if state.get("status") != CaptionRunStatus.QUEUED:
        return f"already {state.get('status')}"
    claimed = CaptionRun.objects.filter(run_id=run_id, status=CaptionRunStatus.QUEUED).update(
        status=CaptionRunStatus.RUNNING, started_at=timezone.now(), updated_at=timezone.now()
    )
    if not claimed:
        return "already claimed"
    return _execute(character_id, state)


def _execute(character_id: int, state: dict[str, Any]) -> str:
    state.update(status="running", started_at=timezone.now())
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
        state.update(status="failed", error="; ".join(messages), finished_at=timezone.now())
        _write(character_id, state)
        return "failed"
    except BaseException as exc:  # record why, then let the worker log it
        state.update(status="failed", error=f"captioning stopped: {exc}", finished_at=timezone.now())
        _write(character_id, state)
        raise
    failed_all = report.total and report.failed == report.total
    state.update(
        status="failed" if failed_all else "succeeded",
        done=report.total,
        total=report.total,
        report=report.as_dict(),
        error=report.errors[0] if failed_all and report.errors else "",
        finished_at=timezone.now(),
    )
    _write(character_id, state)
    return str(state["status"])


def llm_configured() -> bool:
    return bool(settings.TOWER_LLM_BASE_URL)
