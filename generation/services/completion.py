"""How a driven job reports and ends: running, progress, outputs stored and succeeded, or failed.

Every status change goes through :func:`generation.services.jobs.job_move` with the statuses it
expects, so a cancel that lands first simply wins and the engine's write is a no-op. Events
follow the commit; apps above generation hear of a job's end through the announce hooks.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from generation import events
from generation.media import MediaError, png_add_text, probe
from generation.models import Asset, Job, JobKind, JobLogLine, JobStatus, LogLevel
from generation.services.jobs import LogEntry, job_log, job_move, job_transition
from generation.services.reads import LIVE
from generation.workflow import sheet_layout

logger = logging.getLogger(__name__)


def job_started(*, job_id: int, project_id: int | None = None, started_at: datetime | None = None) -> None:
    """submitted → running (ComfyUI began executing the prompt, at ``started_at``); a progress
    event at 0."""
    stamp: dict[str, Any] = {"started_at": started_at} if started_at is not None else {}
    if not job_move(job_id=job_id, to=JobStatus.RUNNING, expect=JobStatus.SUBMITTED, **stamp):
        return
    if project_id is None:
        project_id = Job.objects.filter(pk=job_id).values_list("project_id", flat=True).get()
    events.job_event("progress", job_id=job_id, project_id=project_id, value=0, max=1, node=None)


def job_progress(
    *,
    job_id: int,
    project_id: int,
    fraction: float,
    node: str,
    eta_seconds: float | None,
    worker: str,
    preview: str | None = None,
) -> bool:
    """Store live progress (also the heartbeat); False when the job is no longer ours to drive.

    ``preview`` is the media URL of the job's latest live frame (with a cache-busting counter).
    """
    updated = Job.objects.filter(pk=job_id, status__in=LIVE, worker=worker).update(
        progress=round(fraction, 4), current_node=node[:200], eta_seconds=eta_seconds, heartbeat_at=timezone.now()
    )
    if updated and preview:
        # The caller already limits progress writes to a few a second; every one carries the frame.
        events.job_event(
            "progress",
            job_id=job_id,
            project_id=project_id,
            value=round(fraction, 4),
            max=1.0,
            node=node,
            eta_seconds=eta_seconds,
            preview=preview,
        )
    elif updated:
        events.progress_event(
            job_id=job_id,
            project_id=project_id,
            value=round(fraction, 4),
            maximum=1.0,
            node=node,
            eta_seconds=eta_seconds,
        )
    return bool(updated)


def job_fail(
    *,
    job_id: int,
    error_type: str,
    message: str,
    node: str = "",
    details: dict[str, Any] | None = None,
    expect: set[str] | None = None,
) -> Job | None:
    with transaction.atomic():
        job = job_transition(
            job_id=job_id,
            to=JobStatus.FAILED,
            expect=expect or {JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING},
            error_type=error_type[:200],
            error_message=message,
            error_node=(node or "")[:200],
            error_details=details,
            worker="",
        )
        if job is None:
            return None
        job_log(job_id=job_id, message=f"failed: {message}", level=LogLevel.ERROR, data=details)
        events.job_event(
            "job_failed",
            job_id=job.pk,
            project_id=job.project_id,
            user_id=job.created_by_id,
            error={"type": job.error_type, "node": job.error_node, "message": job.error_message},
        )
        transaction.on_commit(lambda: announce_job_failed(job_id))
    return job


@dataclass(frozen=True)
class FetchedOutput:
    node_id: str
    filename: str
    data: bytes


def job_complete(
    *,
    job_id: int,
    outputs: list[FetchedOutput],
    node_seconds: dict[str, float] | None = None,
    graph: dict[str, Any] | None = None,
    started_at: datetime | None = None,
    known: tuple[Job, str | None] | None = None,
) -> bool:
    """Store the outputs as Assets and mark the job succeeded; False when the job had left the
    engine meanwhile (cancelled: its outputs are kept all the same).

    The files are written first, then their rows and the job's success in one transaction (the
    files are removed again if it fails). Each output is written under a generated name. PNGs
    get the submitted graph as ComfyUI's ``prompt`` chunk (so an output dragged back into ComfyUI
    restores its graph) and Tower's parameters as a ``tower`` chunk: deterministic, so a
    reproduction has the same sha256.
    Idempotent: a job that already has assets (a worker died after storing them) keeps those.
    ``graph`` is the submitted graph when the caller holds it (the claim), saving its read.
    ``node_seconds`` (per-node timings) join the job's timings in the same write, and so does
    ``started_at`` for a prompt that ended before the engine marked it running. ``known`` is the
    claim's copy of the job's fields and template slug (``Claim.known``), saving their read.
    """
    written: list[str] = []
    try:
        # Files before the transaction: on SQLite a write transaction holds the database's one
        # write lock from its BEGIN, and every other worker's claim would wait behind the I/O.
        if known is not None and graph is not None:
            job, slug = known
        else:
            job, slug = _completion_row(job_id, with_graph=graph is None)
        if graph is None:
            graph = job.graph or {}
        log: list[LogEntry] = []
        prepared = _prepare_outputs(job, slug, graph, outputs, written, log)
        with transaction.atomic():
            if Asset.objects.filter(job_id=job_id).exists():  # a worker died after storing them: those are kept
                assets = list(Asset.objects.filter(job_id=job_id).values("pk", "kind", "sha256"))
                transaction.on_commit(functools.partial(_delete_files, list(written)))
            else:
                Asset.objects.bulk_create(prepared)
                assets = [{"pk": a.pk, "kind": a.kind, "sha256": a.sha256} for a in prepared]
            timings = {**(job.timings or {}), "nodes": node_seconds} if node_seconds else job.timings
            reproduced = None
            if job.reproduce_of_id:
                original = sorted(Asset.objects.filter(job_id=job.reproduce_of_id).values_list("sha256", flat=True))
                reproduced = original == sorted(a["sha256"] for a in assets) and bool(original)
                verdict = "identical outputs (sha256 equal)" if reproduced else "outputs differ from the original"
                log.append((LogLevel.INFO, f"reproduction of job {job.reproduce_of_id}: {verdict}", None))
            moved = job_move(
                job_id=job_id,
                to=JobStatus.SUCCEEDED,
                expect={JobStatus.SUBMITTED, JobStatus.RUNNING},
                log=log,
                worker="",
                current_node="",
                error_message="",
                timings=timings,
                **({"started_at": started_at} if started_at is not None else {}),
            )
            if not moved:
                lines = [JobLogLine(job_id=job_id, level=lv, message=m, data=d) for lv, m, d in log]
                JobLogLine.objects.bulk_create(lines)
                return False
            events.job_event(
                "job_complete",
                job_id=job_id,
                project_id=job.project_id,
                user_id=job.created_by_id,
                assets=[{"id": a["pk"], "kind": a["kind"], "sha256": a["sha256"]} for a in assets],
                reproduced=reproduced,
            )
            transaction.on_commit(lambda: announce_job_succeeded(job_id))
    except BaseException:
        _delete_files(written)
        raise
    return True


def _delete_files(names: list[str]) -> None:
    for name in names:
        Asset.file.field.storage.delete(name)


_COMPLETION_FIELDS = (
    "project",
    "created_by",
    "prompt",
    "negative_prompt",
    "seed",
    "mode",
    "params",
    "reproduce_of",
    "timings",
    "template",
    "kind",  # a character sheet's outputs record its layout
)


def _completion_row(job_id: int, *, with_graph: bool) -> tuple[Job, str | None]:
    """The job's fields a completion needs, and its template's slug."""
    fields = (*_COMPLETION_FIELDS, "graph") if with_graph else _COMPLETION_FIELDS
    job = Job.objects.filter(pk=job_id).annotate(template_slug=F("template__slug")).only(*fields).get()
    return job, job.template_slug


def _prepare_outputs(
    job: Job,
    slug: str | None,
    graph: dict[str, Any],
    outputs: list[FetchedOutput],
    written: list[str],
    log: list[LogEntry],
) -> list[Asset]:
    """Write each output's file and build its (unsaved) Asset; ``written`` collects the file names
    (so the caller can remove them if the transaction fails), ``log`` the outputs skipped and why."""
    tower_meta = {
        "prompt": job.prompt,
        "negative": job.negative_prompt,
        "seed": job.seed,
        "mode": job.mode,
        "params": {k: v for k, v in (job.params or {}).items() if k != "inputs"},
        "template": slug,
    }
    poses = (job.params or {}).get("poses")
    if job.kind == JobKind.CHARACTER_SHEET and isinstance(poses, list) and poses:
        # How to split the sheet into its poses' panels (4 columns, as many rows as needed).
        tower_meta["sheet_layout"] = sheet_layout(len(poses))
    created: list[Asset] = []
    for index, out in enumerate(outputs):
        try:
            info = probe(out.data, filename=out.filename)
        except MediaError as exc:
            log.append((LogLevel.WARNING, f"output {out.filename} skipped: {exc}", None))
            continue
        data = out.data
        if info.extension == "png":
            data = png_add_text(data, {"prompt": graph, "tower": tower_meta})
        asset = Asset(
            project_id=job.project_id,
            job_id=job.pk,
            kind=info.kind,
            mime=info.mime,
            size_bytes=len(data),
            width=info.width,
            height=info.height,
            frames=info.frames,
            fps=info.fps,
            duration_seconds=info.duration_seconds,
            sha256=hashlib.sha256(data).hexdigest(),
            node_id=out.node_id,
            comfy_filename=out.filename[:300],
            metadata=tower_meta,
        )
        asset.file.save(f"job{job.pk}-{index + 1}.{info.extension}", ContentFile(data), save=False)
        written.append(str(asset.file.name))
        created.append(asset)
    return created


def announce_job_succeeded(job_id: int) -> None:
    """Call every function listed in ``settings.TOWER_ON_JOB_SUCCEEDED`` with the job's id.

    This is how apps above generation (quality scores and gates outputs) learn that a job
    finished, without generation importing them: the subscription is a visible list of dotted
    paths in settings, not a signal. Each is called in the engine's process after the success
    commits (the job is SUCCEEDED and its outputs exist), so it must be quick: enqueue work, never
    do it. A subscriber that raises is logged and does not stop the others; subscribers must be
    idempotent, and catch up on announcements they lost (quality's ``score_missing``).
    """
    for path in getattr(settings, "TOWER_ON_JOB_SUCCEEDED", ()):
        try:
            import_string(path)(job_id)
        except Exception:
            logger.warning("%s failed for job %s", path, job_id, exc_info=True)


def announce_job_failed(job_id: int) -> None:
    """Call every function listed in ``settings.TOWER_ON_JOB_FAILED`` with the job's id, after the
    failure commits: as :func:`announce_job_succeeded` (quick, idempotent, logged when they raise)."""
    for path in getattr(settings, "TOWER_ON_JOB_FAILED", ()):
        try:
            import_string(path)(job_id)
        except Exception:
            logger.warning("%s failed for job %s", path, job_id, exc_info=True)
