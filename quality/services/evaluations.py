"""On-demand evaluations scored by a worker, not in the web process.

``evaluation_request`` (web) stores the upload under ``MEDIA_ROOT/evaluations/<sha256>`` and
enqueues ``quality.tasks.evaluate_media`` after commit; ``evaluation_run`` (worker) claims the row,
decodes and scores the media with :func:`quality.services.evaluate.media_evaluate`, and keeps the
answer's body (or the reason it failed) on the row; ``evaluation_wait`` (web) waits for it a bounded
time. The caller bounds the upload (bytes, pixels) before calling ``evaluation_request``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from characters.models import Character
from generation.models import Asset
from projects.models import Project
from quality.models import Evaluation, EvaluationStatus
from quality.services.common import QualityError
from quality.services.evaluate import Evaluation as Scored
from quality.services.evaluate import media_evaluate

logger = logging.getLogger(__name__)

UNFINISHED = (EvaluationStatus.PENDING, EvaluationStatus.RUNNING)
# How a failed evaluation's error starts when no worker could be asked: the service, not the media, failed.
QUEUE_UNREACHABLE = "the task queue cannot be reached"


def upload_path(sha256: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "evaluations" / sha256


def _store(data: bytes, sha256: str) -> None:
    target = upload_path(sha256)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{sha256}.{os.getpid()}.{time.monotonic_ns()}.part")
    partial.write_bytes(data)
    os.replace(partial, target)  # readers never see half a file


def evaluation_request(
    *,
    user: User,
    project: Project,
    character: Character | None,
    asset: Asset | None = None,
    data: bytes | None = None,
    enqueue: Callable[[int], None],
) -> Evaluation:
    """Record an evaluation of ``asset`` or of ``data`` (an upload), and have a worker score it."""
    if (asset is None) == (data is None):
        raise QualityError("give either a file or an asset")
    sha256 = hashlib.sha256(data).hexdigest() if data is not None else ""
    row = Evaluation.objects.create(user=user, project=project, character=character, asset=asset, upload_sha256=sha256)
    if data is not None:
        # Written after the row exists: a worker that just finished another evaluation of the same
        # content deletes the file only when no unfinished row names it (see _release).
        _store(data, sha256)
    transaction.on_commit(lambda: _dispatch(row, enqueue))
    return row


def _dispatch(row: Evaluation, enqueue: Callable[[int], None]) -> None:
    try:
        enqueue(row.pk)
    except Exception as exc:
        # No worker will ever see it: say so at once (the caller's answer) instead of pending forever.
        logger.warning("broker unreachable; evaluation %s not queued", row.pk, exc_info=True)
        _finish(row.pk, status=EvaluationStatus.FAILED, error=f"{QUEUE_UNREACHABLE} ({exc}); try again")
        _release(row.upload_sha256)


def _body(scored: Scored, *, asset: Asset | None, character: Character | None) -> dict[str, Any]:
    results = []
    for r in scored.results:
        threshold = scored.thresholds.get(r.metric)
        passed = None if threshold is None or r.value is None or not r.ok else r.value >= threshold
        results.append(
            {
                "metric": r.metric,
                "status": r.status.value,
                "value": r.value,
                "model_id": r.model_id,
                "threshold": threshold,
                "passed": passed,
                "fix": r.fix,
                "details": r.details,
            }
        )
    return {
        "asset": asset.pk if asset else None,
        "character": character.pk if character else None,
        "frames": scored.frames,
        "results": results,
    }


def _finish(pk: int, **fields: Any) -> None:
    Evaluation.objects.filter(pk=pk).update(finished_at=timezone.now(), **fields)


def _release(sha256: str) -> None:
    if sha256 and not Evaluation.objects.filter(upload_sha256=sha256, status__in=UNFINISHED).exists():
        upload_path(sha256).unlink(missing_ok=True)


def evaluation_run(*, evaluation_id: int) -> str:
    """Score one evaluation (worker side); a row already claimed (re-delivered task) is left alone."""
    if not Evaluation.objects.filter(pk=evaluation_id, status=EvaluationStatus.PENDING).update(
        status=EvaluationStatus.RUNNING
    ):
        return "not claimed"
    row = Evaluation.objects.select_related("project", "character", "asset").get(pk=evaluation_id)
    max_bytes = settings.UPLOAD_MAX_BYTES
    try:
        if row.asset is not None:
            with row.asset.file.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        else:
            try:
                data = upload_path(row.upload_sha256).read_bytes()
            except FileNotFoundError:
                raise QualityError("the upload is no longer stored; send it again") from None
        scored = media_evaluate(
            data=data, project=row.project, character=row.character, asset=row.asset, max_bytes=max_bytes
        )
    except QualityError as exc:
        _finish(evaluation_id, status=EvaluationStatus.FAILED, error=str(exc))
        _release(row.upload_sha256)
        return "failed"
    except Exception as exc:
        # The requester is told it failed instead of polling forever; django-q still logs the crash.
        _finish(evaluation_id, status=EvaluationStatus.FAILED, error=f"the evaluation failed: {exc}")
        _release(row.upload_sha256)
        raise
    _finish(evaluation_id, status=EvaluationStatus.DONE, result=_body(scored, asset=row.asset, character=row.character))
    _release(row.upload_sha256)
    return "done"


def evaluation_wait(*, evaluation_id: int, seconds: float) -> Evaluation:
    """The evaluation once a worker has finished it, or as it is after ``seconds``."""
    if transaction.get_connection().in_atomic_block:
        seconds = 0  # the row is not committed yet, so no worker can have it: nothing to wait for
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        row = Evaluation.objects.get(pk=evaluation_id)
        left = deadline - time.monotonic()
        if row.status not in UNFINISHED or left <= 0:
            return row
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.5)
