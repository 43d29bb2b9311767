"""Each kind of source turned into candidates for the pipeline (uploads, archives, videos, URLs, ComfyUI folders)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings

from tower.core.errors import DomainError
from training.ingest import archives, comfy
from training.ingest.pipeline import Candidate, Progress, Report
from training.ingest.video import Extraction, extract_frames
from training.models import DatasetSource

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}
MAX_SCAN_FILES = 100_000


class SourceError(DomainError):
    """The source cannot be used at all; the batch fails with this message."""


# --- ComfyUI folders ----------------------------------------------------------------------------


def allowed_output_dirs() -> list[str]:
    return [str(d) for d in settings.TOWER_COMFYUI_OUTPUT_DIRS if str(d).strip()]


def resolve_output_folder(root: str, subfolder: str = "") -> Path:
    """The folder to scan: ``subfolder`` inside one of TOWER_COMFYUI_OUTPUT_DIRS, symlinks resolved.

    Anything else (another root, an absolute or ``..`` subfolder, a symlink leading out) is refused.
    """
    allowed = allowed_output_dirs()
    if not allowed:
        raise SourceError("no ComfyUI output folder is configured (TOWER_COMFYUI_OUTPUT_DIRS)")
    if root not in allowed:
        raise SourceError(f"“{root}” is not one of the allowed ComfyUI output folders")
    sub = (subfolder or "").strip().replace("\\", "/")
    parts = PurePosixPath(sub).parts
    if sub.startswith("/") or ".." in parts or "\x00" in sub or (parts and ":" in parts[0]):
        raise SourceError(f"the subfolder “{subfolder}” must be a plain relative path inside {root}")
    base = Path(root).resolve()
    target = (base / sub).resolve() if sub else base
    if target != base and base not in target.parents:
        raise SourceError(f"the subfolder “{subfolder}” leads outside {root}")
    if not target.is_dir():
        raise SourceError(f"the folder {target} does not exist")
    return target


def scan_folder(folder: Path, base: Path, report: Report) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted); files whose real path leaves ``base`` are skipped."""
    found: list[Path] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            real = path.resolve()
            if base != real and base not in real.parents:
                report.note(f"{path.relative_to(folder)}: a link leading outside {base}; skipped")
                continue
            found.append(path)
            if len(found) > MAX_SCAN_FILES:
                raise SourceError(f"more than {MAX_SCAN_FILES:,} images under {folder}; choose a subfolder")
    if skipped:
        report.info["other_files_ignored"] = skipped
    return found


def _read_comfy(candidate: Candidate, data: bytes) -> None:
    """In the worker: the prompt ComfyUI embedded becomes the caption; the graph is kept to find the job."""
    meta = comfy.read_metadata(data)
    candidate.caption = meta.positive
    candidate.extra["graph"] = meta.graph
    candidate.extra["seed"] = meta.seed


def folder_candidates(folder: Path, base: Path, report: Report) -> list[Candidate]:
    files = scan_folder(folder, base, report)
    return [
        Candidate(label=str(path.relative_to(base)), path=path, source=DatasetSource.COMFY_SCAN, prepare=_read_comfy)
        for path in files
    ]


# --- archives, images, videos --------------------------------------------------------------------


def archive_candidates(path: Path, *, label: str, source: str) -> tuple[int, Iterator[Candidate]]:
    """Checks the whole archive first (a refused archive adds nothing), then yields its images lazily."""
    max_bytes = settings.TOWER_INGEST_MAX_ARCHIVE_BYTES
    try:
        members = archives.image_members(
            path, max_bytes=max_bytes, max_members=settings.TOWER_INGEST_MAX_ARCHIVE_MEMBERS
        )
        archives.verify(path, members, max_bytes=max_bytes)
    except archives.ArchiveError as exc:
        raise SourceError(f"{label}: {exc}") from None

    def generate() -> Iterator[Candidate]:
        for name, data in archives.read_members(path, members, max_member_bytes=settings.UPLOAD_MAX_BYTES):
            yield Candidate(label=f"{label}/{name}", data=data, source=source)

    return len(members), generate()


def video_candidates(
    path: Path, *, label: str, source: str, per_shot: int, progress: Callable[[int, int | None], None], report: Report
) -> list[Candidate]:
    from training.ingest.video import VideoError

    size = path.stat().st_size
    if size > settings.TOWER_INGEST_MAX_VIDEO_BYTES:
        raise SourceError(
            f"{label}: the video is {size:,} bytes; the limit is {settings.TOWER_INGEST_MAX_VIDEO_BYTES:,}"
        )
    try:
        extraction: Extraction = extract_frames(path, per_shot=per_shot, progress=progress)
    except VideoError as exc:
        raise SourceError(f"{label}: {exc}") from None
    report.info.setdefault("videos", []).append(
        {
            "name": label,
            "duration_seconds": round(extraction.duration, 3),
            "shots": len(extraction.shots),
            "frames_decoded": extraction.decoded,
            "frames_kept": len(extraction.frames),
        }
    )
    return [
        Candidate(
            label=f"{label} shot {f.shot + 1} frame {f.index} ({f.seconds:.2f} s)",
            data=f.png,
            source=source,
            extra={"sharpness": f.sharpness},
        )
        for f in extraction.frames
    ]


def sniff(head: bytes) -> str:
    """'archive', 'image' or 'video' from a file's first 16 bytes (never its name); validated properly later."""
    if archives.is_zip(head):
        return "archive"
    if head.startswith(b"\x89PNG") or head[:3] == b"\xff\xd8\xff" or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide") or head[:4] == b"\x1a\x45\xdf\xa3":
        return "video"  # MP4/MOV, Matroska/WebM
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video"
    return "image"  # unknown: the image check says precisely why it is refused


def file_candidates(
    path: Path,
    *,
    label: str,
    source_for_images: str,
    source_for_video: str,
    options: dict[str, Any],
    progress: Progress,
    report: Report,
) -> tuple[int | None, Iterator[Candidate] | list[Candidate], str]:
    """Candidates of one stored file of any kind: (count if known, candidates, stage name)."""
    with path.open("rb") as handle:
        kind = sniff(handle.read(16))
    if kind == "archive":
        count, items = archive_candidates(path, label=label, source=source_for_images)
        return count, items, "adding images from the archive"
    if kind == "video":
        progress.stage(f"finding shots and sharp frames in {label}")
        frames = video_candidates(
            path,
            label=label,
            source=source_for_video,
            per_shot=int(options.get("frames_per_shot") or 3),
            progress=progress.update,
            report=report,
        )
        return len(frames), frames, "adding frames"
    return 1, [Candidate(label=label, path=path, source=source_for_images)], "adding the image"
