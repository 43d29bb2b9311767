"""Ingestion writes: start a batch (the source is stored first), run it, fail it with a clear message.

The source the user handed over (upload, archive, video, downloaded file) is kept in
``IngestBatch.source_file`` under a generated name, so nothing is lost when a later step fails;
a ComfyUI folder is only read, never changed.
"""

from __future__ import annotations

import logging
import shutil
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from characters.models import Character
from generation.models import Asset, Job
from projects.models import Project
from tower.core.errors import DomainError
from tower.core.files import delete_files_after_commit, stored_name
from training.ingest import comfy, sources
from training.ingest.download import DownloadError, check_url, download
from training.ingest.pipeline import Candidate, Ingestor, Progress, Report, thumbnail_name
from training.models import CaptionSource, DatasetImage, DatasetSource, HeldImage, IngestBatch, IngestStatus

log = logging.getLogger(__name__)

MAX_FRAMES_PER_SHOT = 20
KINDS = ("upload", "url", "folder")


class IngestError(DomainError):
    """The batch cannot be started or run as asked; the message is for the user."""


# --- starting ----------------------------------------------------------------------------------


def _options(frames_per_shot: int | None, playlist: bool) -> dict[str, Any]:
    per_shot = 3 if frames_per_shot is None else int(frames_per_shot)
    if not 1 <= per_shot <= MAX_FRAMES_PER_SHOT:
        raise IngestError(f"frames per shot must be between 1 and {MAX_FRAMES_PER_SHOT}")
    return {"frames_per_shot": per_shot, "playlist": bool(playlist)}


def _limit_for(kind: str) -> int:
    return {
        "archive": settings.TOWER_INGEST_MAX_ARCHIVE_BYTES,
        "video": settings.TOWER_INGEST_MAX_VIDEO_BYTES,
    }.get(kind, settings.UPLOAD_MAX_BYTES)


def _safe_label(name: str | None) -> str:
    return PurePosixPath((name or "upload").replace("\\", "/")).name[:200] or "upload"


@transaction.atomic
def ingest_batch_start(
    *,
    project: Project,
    user: User | None,
    character: Character | None = None,
    uploads: Sequence[UploadedFile] = (),
    url: str = "",
    folder_root: str = "",
    subfolder: str = "",
    frames_per_shot: int | None = None,
    playlist: bool = False,
) -> IngestBatch:
    """Store the source, create the batch and enqueue its task after commit.

    Exactly one of ``uploads`` (images, one zip, or one video), ``url`` or ``folder_root`` is given.
    The caller has checked that the user may edit ``project``.
    """
    given = [bool(uploads), bool(url.strip()), bool(folder_root)]
    if sum(given) != 1:
        raise IngestError("choose one source: files to upload, a URL, or a ComfyUI folder")
    if character is not None and character.project_id != project.pk:
        raise IngestError("that character belongs to another project")
    options = _options(frames_per_shot, playlist)
    batch = IngestBatch(project=project, character=character, created_by=user, options=options)
    if url.strip():
        try:
            batch.source_ref = check_url(url)
        except DownloadError as exc:
            raise IngestError(str(exc)) from None
        batch.source = DatasetSource.YOUTUBE
        options["kind"] = "url"
    elif folder_root:
        try:
            folder = sources.resolve_output_folder(folder_root, subfolder)
        except sources.SourceError as exc:
            raise IngestError(str(exc)) from None
        batch.source = DatasetSource.COMFY_SCAN
        batch.source_ref = str(folder)
        options.update(kind="folder", root=folder_root, subfolder=subfolder.strip())
    else:
        _attach_uploads(batch, list(uploads))
    batch.full_clean(exclude=["source_file"])
    batch.save()
    transaction.on_commit(lambda: enqueue_run(batch.pk))
    return batch


def _attach_uploads(batch: IngestBatch, uploads: list[UploadedFile]) -> None:
    """One file is stored as it is; several images are packed, untouched, into one stored zip."""
    if len(uploads) == 1:
        upload = uploads[0]
        kind = _sniff_upload(upload)
        limit = _limit_for(kind)
        if upload.size and upload.size > limit:
            raise IngestError(f"{_safe_label(upload.name)} is {upload.size:,} bytes; the limit is {limit:,}")
        batch.source = DatasetSource.VIDEO_FRAME if kind == "video" else DatasetSource.UPLOAD
        batch.source_ref = _safe_label(upload.name)
        batch.options["kind"] = kind
        extension = {"archive": "zip", "video": "video", "image": "img"}[kind]
        upload.seek(0)
        batch.source_file.save(f"{uuid.uuid4().hex}.{extension}", File(upload), save=False)
        return
    total = sum(u.size or 0 for u in uploads)
    if len(uploads) > settings.TOWER_INGEST_MAX_ARCHIVE_MEMBERS or total > settings.TOWER_INGEST_MAX_ARCHIVE_BYTES:
        raise IngestError("too many files or bytes at once; send a zip archive or fewer files")
    for upload in uploads:
        if _sniff_upload(upload) != "image":
            raise IngestError(f"{_safe_label(upload.name)}: send archives and videos one at a time")
    tmp = Path(settings.MEDIA_ROOT) / "ingest" / "tmp" / f"{uuid.uuid4().hex}.zip"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            seen: set[str] = set()
            for number, upload in enumerate(uploads, 1):
                name = _safe_label(upload.name)
                if name in seen:
                    name = f"{number}-{name}"
                seen.add(name)
                upload.seek(0)
                with archive.open(name, "w", force_zip64=True) as member:
                    shutil.copyfileobj(upload, member, 1024 * 1024)
        with tmp.open("rb") as handle:
            batch.source_file.save(f"{uuid.uuid4().hex}.zip", File(handle), save=False)
    finally:
        tmp.unlink(missing_ok=True)
    batch.source = DatasetSource.UPLOAD
    batch.source_ref = f"{len(uploads)} files"
    batch.options["kind"] = "archive"


def _sniff_upload(upload: UploadedFile) -> str:
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    return sources.sniff(head)


def enqueue_run(batch_id: int) -> None:
    from generation.tasks import async_task

    async_task("training.ingest.tasks.ingest_run", batch_id, task_name=f"ingest-{batch_id}", group="ingest")


# --- running -----------------------------------------------------------------------------------


def ingest_batch_claim(*, batch_id: int) -> bool:
    """queued → running; False when another worker has it (a re-delivered task)."""
    now = timezone.now()
    return bool(
        IngestBatch.objects.filter(pk=batch_id, status=IngestStatus.QUEUED).update(
            status=IngestStatus.RUNNING, started_at=now, stage="starting", error_message=""
        )
    )


def ingest_batch_finish(*, batch_id: int, error: str = "", nothing_added: str = "") -> None:
    """running → failed (``error``), nothing added (``nothing_added`` says why) or succeeded."""
    fields: dict[str, Any] = {"finished_at": timezone.now(), "stage": "done"}
    if error:
        fields.update(status=IngestStatus.FAILED, stage="failed", error_message=error)
    elif nothing_added:
        fields.update(status=IngestStatus.NOTHING_ADDED, stage="nothing added", error_message=nothing_added)
    else:
        fields["status"] = IngestStatus.SUCCEEDED
    IngestBatch.objects.filter(pk=batch_id, status=IngestStatus.RUNNING).update(**fields)


def nothing_added_reason(report: Report) -> str:
    """Why a batch that ran to the end added no image, in words a person can act on ("" when it added some)."""
    if report.added:
        return ""
    seen = report.duplicate + report.too_small + report.unreadable + report.unclassified
    if not seen:
        return "No image was found in the source."
    parts = []
    if report.unclassified:
        why = report.reasons.get("unclassified", "no character could be recognised")
        parts.append(f"{report.unclassified} without a recognised character ({why})")
    if report.duplicate:
        parts.append(f"{report.duplicate} duplicate{'s' if report.duplicate != 1 else ''} of images already there")
    if report.too_small:
        parts.append(f"{report.too_small} too small")
    if report.unreadable:
        parts.append(f"{report.unreadable} unreadable")
    text = f"None of {seen} image{'s' if seen != 1 else ''} was added: " + "; ".join(parts) + "."
    if report.held:
        text += (
            f" {report.held} {'are' if report.held != 1 else 'is'} kept aside: assign them to a character"
            " (or keep a near-duplicate anyway) on the review page, without uploading again."
        )
    return text


def ingest_batch_run(*, batch_id: int) -> IngestBatch:
    """Run a claimed batch to the end. Errors the user can act on end the batch failed with the message.

    Images already added stay (each was committed with its files); the report says what happened.
    """
    batch = IngestBatch.objects.select_related("project", "character").get(pk=batch_id)
    from training.llm import classify

    progress = Progress(batch)
    ingestor = Ingestor(batch, progress=progress, classify=classify.classify_image)
    try:
        _run(batch, ingestor, progress)
    except (sources.SourceError, DownloadError, IngestError) as exc:
        progress.report(ingestor.report)
        ingest_batch_finish(batch_id=batch_id, error=str(exc))
    except Exception as exc:
        log.exception("ingest batch %s failed", batch_id)
        progress.report(ingestor.report)
        ingest_batch_finish(batch_id=batch_id, error=f"internal error ({exc.__class__.__name__}: {exc})")
        raise
    else:
        report = ingestor.report
        if report.unreadable and not (report.added or report.duplicate or report.too_small or report.unclassified):
            ingest_batch_finish(batch_id=batch_id, error=f"nothing could be read: {report.messages[0]}")
        else:
            ingest_batch_finish(batch_id=batch_id, nothing_added=nothing_added_reason(report))
    batch.refresh_from_db()
    return batch


def _run(batch: IngestBatch, ingestor: Ingestor, progress: Progress) -> None:
    kind = batch.options.get("kind")
    if kind == "folder":
        root = batch.options.get("root", "")
        folder = sources.resolve_output_folder(root, batch.options.get("subfolder", ""))
        progress.stage(f"scanning {folder}")
        candidates = sources.folder_candidates(folder, Path(root).resolve(), ingestor.report)
        ingestor.hooks.append(_link_origin(batch.project))
        ingestor.run(candidates, total=len(candidates), stage="adding images from the folder")
        return
    if kind == "url":
        _run_url(batch, ingestor, progress)
        return
    if not batch.source_file:
        raise IngestError("the uploaded file is missing")
    path = Path(batch.source_file.path)
    count, found, stage = sources.file_candidates(
        path,
        label=batch.source_ref or "upload",
        source_for_images=DatasetSource.UPLOAD,
        source_for_video=DatasetSource.VIDEO_FRAME,
        options=batch.options,
        progress=progress,
        report=ingestor.report,
    )
    ingestor.run(found, total=count, stage=stage)


def _run_url(batch: IngestBatch, ingestor: Ingestor, progress: Progress) -> None:
    tmp = Path(settings.MEDIA_ROOT) / "ingest" / str(batch.project_id) / f"download-{batch.pk}"
    progress.stage(f"downloading {batch.source_ref}")
    try:
        files = download(
            batch.source_ref,
            dest=tmp,
            max_bytes=settings.TOWER_INGEST_MAX_VIDEO_BYTES,
            playlist=bool(batch.options.get("playlist")),
            progress=lambda done, total: progress.update(done, total),
        )
        # Kept like an upload: the first file is the batch's source file, the rest beside it.
        kept: list[str] = []
        for number, path in enumerate(files):
            with path.open("rb") as handle:
                if number == 0:
                    batch.source_file.save(f"{uuid.uuid4().hex}.video", File(handle), save=True)
                    kept.append(stored_name(batch.source_file))
                else:
                    kept.append(
                        batch.source_file.storage.save(
                            f"ingest/{batch.project_id}/{uuid.uuid4().hex}.video", File(handle)
                        )
                    )
        ingestor.report.info["downloaded"] = kept
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    storage = batch.source_file.storage
    for number, name in enumerate(kept, 1):
        label = batch.source_ref if len(kept) == 1 else f"{batch.source_ref} #{number}"
        count, candidates, stage = sources.file_candidates(
            Path(storage.path(name)),
            label=label,
            source_for_images=DatasetSource.YOUTUBE,
            source_for_video=DatasetSource.YOUTUBE,
            options=batch.options,
            progress=progress,
            report=ingestor.report,
        )
        ingestor.run(candidates, total=count, stage=stage)


def _link_origin(project: Project) -> Any:
    """The hook that ties a scanned ComfyUI output to the Tower job that made it, when there is one."""

    def hook(candidate: Candidate, result: Any, image: DatasetImage) -> None:
        asset = Asset.objects.filter(project=project, sha256=result.checked.sha256).select_related("job").first()
        if asset is not None:
            image.origin_asset = asset
            image.origin_job_id = asset.job_id
            return
        graph = candidate.extra.get("graph")
        if not graph:
            return
        wanted = comfy.canonical_graph(graph)
        jobs = Job.objects.filter(project=project, graph__isnull=False)
        seed = candidate.extra.get("seed")
        narrowed = jobs.filter(prompt=candidate.caption) if candidate.caption else jobs.none()
        if seed is not None:
            narrowed = narrowed | jobs.filter(seed=seed)
        for job_id, job_graph in narrowed.order_by("-created_at").values_list("pk", "graph")[:200]:
            if isinstance(job_graph, dict) and comfy.canonical_graph(job_graph) == wanted:
                image.origin_job_id = job_id
                return

    return hook


# --- images kept aside ---------------------------------------------------------------------------


@transaction.atomic
def held_image_add(*, held: HeldImage, character: Character, user: User | None) -> DatasetImage:
    """Put an image kept aside by ingestion into ``character``'s dataset, from the stored file.

    An unassigned image is assigned by hand; a near-duplicate is kept anyway. The held row goes, and
    its files after commit. The caller has checked that the user may edit the batch's project.
    """
    held = HeldImage.objects.select_for_update().select_related("batch").get(pk=held.pk)
    if character.project_id != held.batch.project_id:
        raise IngestError("that character belongs to another project")
    if DatasetImage.objects.filter(character=character, sha256=held.sha256).exists():
        raise IngestError(f"this image is already in {character.name}'s dataset")
    image = DatasetImage(
        character=character,
        sha256=held.sha256,
        phash=held.phash,
        width=held.width,
        height=held.height,
        source=held.source,
        source_ref=held.source_ref,
        ingest_batch=held.batch,
        caption=held.caption,
        caption_source=CaptionSource.TAGS if held.caption else CaptionSource.NONE,
        classification_method="manual",
        classified_character=character,
        reviewed_by=None,
    )
    storage = held.image.storage
    old_files = [stored_name(held.image), thumbnail_name(stored_name(held.image))]
    stored: list[str] = []
    try:
        with held.image.open("rb") as handle:
            image.image.save(PurePosixPath(old_files[0]).name, File(handle), save=False)
        stored.append(stored_name(image.image))
        if storage.exists(old_files[1]):
            with storage.open(old_files[1], "rb") as handle:
                stored.append(storage.save(thumbnail_name(stored[0]), File(handle)))
        image.full_clean(exclude=["image"])
        image.save()
        held.delete()
    except BaseException:
        for name in stored:
            storage.delete(name)
        raise
    delete_files_after_commit([(storage, name) for name in old_files])
    log.info("held image of batch %s added to %s's dataset by %s", held.batch_id, character, user)
    return image


@transaction.atomic
def held_image_discard(*, held: HeldImage) -> None:
    """Drop an image kept aside; its files go after commit."""
    storage = held.image.storage
    names = [stored_name(held.image), thumbnail_name(stored_name(held.image))]
    held.delete()
    delete_files_after_commit([(storage, name) for name in names])
