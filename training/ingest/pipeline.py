"""Candidates → dataset images: validate, hash and thumbnail (threads), then, in order, drop what is too
small or a duplicate, classify, and store each image with its thumbnail in its own transaction.

Every image is committed with its file, so a batch that fails half-way leaves the images it added
whole and consistent; the batch's report says what happened to every candidate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from characters.models import Character
from tower.core.files import stored_name
from tower.core.uploads import UploadError
from training.ingest.dedupe import PhashIndex, character_index
from training.ingest.imaging import Analysed, analyse, parallel_map
from training.models import CaptionSource, DatasetImage, HeldImage, HeldReason, IngestBatch

log = logging.getLogger(__name__)

MAX_MESSAGES = 200
PROGRESS_EVERY_SECONDS = 0.5
WORKERS = 2


def thumbnail_name(image_name: str) -> str:
    """Where the JPEG thumbnail of a stored dataset image lives (beside it, under thumbs/)."""
    folder, _, file = image_name.rpartition("/")
    stem = file.rsplit(".", 1)[0]
    return f"{folder}/thumbs/{stem}.jpg" if folder else f"thumbs/{stem}.jpg"


@dataclass
class Candidate:
    """One image to consider. ``data`` or ``path`` (read by the worker thread, bounded)."""

    label: str  # file name, archive member or frame: names it in messages and in source_ref
    source: str
    data: bytes | None = None
    path: Path | None = None
    caption: str = ""
    prepare: Callable[[Candidate, bytes], None] | None = None  # extra work on the bytes, in the worker
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    added: int = 0
    duplicate: int = 0
    too_small: int = 0
    unreadable: int = 0
    unclassified: int = 0
    held: int = 0  # unassigned or near-duplicate images kept aside (HeldImage) for a person to add
    messages: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)  # outcome → the first reason, for the summary
    omitted: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def note(self, message: str) -> None:
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(message)
        else:
            self.omitted += 1

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "added": self.added,
            "duplicate": self.duplicate,
            "too_small": self.too_small,
            "unreadable": self.unreadable,
            "unclassified": self.unclassified,
            "held": self.held,
            "reasons": dict(self.reasons),
            "messages": self.messages + ([f"… and {self.omitted} more"] if self.omitted else []),
        }
        out.update(self.info)
        return out


class Progress:
    """Throttled writes of the batch's stage and counters (the page polls them)."""

    def __init__(self, batch: IngestBatch) -> None:
        self.batch_id = batch.pk
        self._last = 0.0

    def stage(self, stage: str, *, total: int | None = None, done: int = 0) -> None:
        IngestBatch.objects.filter(pk=self.batch_id).update(stage=stage[:120], progress_total=total, progress_done=done)
        self._last = time.monotonic()

    def update(self, done: int, total: int | None = None, *, force: bool = False) -> None:
        now = time.monotonic()
        # At most every half second, but at least every 2% of a known total (small batches show each step).
        step = max(1, (total or 0) // 50)
        if not force and now - self._last < PROGRESS_EVERY_SECONDS and (not total or done % step):
            return
        self._last = now
        fields: dict[str, Any] = {"progress_done": done}
        if total is not None:
            fields["progress_total"] = max(total, done)
        IngestBatch.objects.filter(pk=self.batch_id).update(**fields)

    def report(self, report: Report) -> None:
        IngestBatch.objects.filter(pk=self.batch_id).update(report=report.as_json())


def _work(candidate: Candidate) -> tuple[Candidate, Analysed | str]:
    """In a worker thread: read, check, hash, thumbnail. Returns the analysis or why it failed."""
    try:
        data = candidate.data
        if data is None and candidate.path is not None:
            with candidate.path.open("rb") as handle:
                data = handle.read(settings.UPLOAD_MAX_BYTES + 1)
        if data is None:
            return candidate, "nothing to read"
        analysed = analyse(data, max_bytes=settings.UPLOAD_MAX_BYTES, max_pixels=settings.UPLOAD_MAX_PIXELS)
        if candidate.prepare:
            candidate.prepare(candidate, analysed.checked.data)
        return candidate, analysed
    except UploadError as exc:
        return candidate, str(exc)
    except OSError as exc:
        return candidate, f"cannot be read ({exc.strerror or exc.__class__.__name__})"
    finally:
        candidate.data = None  # the checked bytes live on in the analysis; free the original


class Ingestor:
    """Runs candidates of one batch into the dataset; holds the report and the de-duplication indexes."""

    def __init__(self, batch: IngestBatch, *, progress: Progress, classify: Callable[..., Any] | None = None) -> None:
        self.batch = batch
        self.project = batch.project
        self.target: Character | None = batch.character
        self.progress = progress
        self.report = Report()
        self.min_side = settings.TOWER_DATASET_MIN_SIDE
        self.distance = settings.TOWER_DATASET_PHASH_DISTANCE
        self.batch_index = PhashIndex(self.distance)
        self._indexes: dict[int, PhashIndex] = {}
        self._characters = {c.pk: c for c in Character.objects.filter(project=self.project)}
        self._classify = classify
        self.hooks: list[Callable[[Candidate, Analysed, DatasetImage], None]] = []  # set fields before save

    def _index(self, character_id: int) -> PhashIndex:
        if character_id not in self._indexes:
            self._indexes[character_id] = character_index(character_id, max_distance=self.distance)
        return self._indexes[character_id]

    def run(self, candidates: Iterable[Candidate], *, total: int | None, stage: str = "adding images") -> None:
        self.progress.stage(stage, total=total)
        done = 0
        for candidate, result in parallel_map(_work, candidates, workers=WORKERS, window=WORKERS * 4):
            self._one(candidate, result)
            done += 1
            self.progress.update(done, total)
        self.progress.update(done, total if total is not None else done, force=True)
        self.progress.report(self.report)

    def _one(self, candidate: Candidate, result: Analysed | str) -> None:
        report = self.report
        if isinstance(result, str):
            report.unreadable += 1
            report.note(f"{candidate.label}: {result}")
            return
        checked = result.checked
        if min(checked.width, checked.height) < self.min_side:
            report.too_small += 1
            report.note(f"{candidate.label}: {checked.width}×{checked.height} is smaller than {self.min_side} px")
            return
        if self._duplicate(candidate, result, self.batch_index, "in this batch", self.target):
            return
        if self.target is not None and self._duplicate(
            candidate, result, self._index(self.target.pk), "dataset", self.target
        ):
            return
        verdict = self._classification(candidate, result)
        character = self.target
        if character is None:
            character = self._characters.get(verdict.character_id) if verdict and verdict.character_id else None
            if character is None:
                report.unclassified += 1
                why = verdict.note if verdict and verdict.note else "no character could be recognised"
                report.reasons.setdefault("unclassified", why)
                if self._hold(candidate, result, reason=HeldReason.UNASSIGNED, note=why):
                    report.note(f"{candidate.label}: kept unassigned, {why}")
                else:
                    report.note(f"{candidate.label}: not added, {why}")
                return
            if self._duplicate(candidate, result, self._index(character.pk), "dataset", character):
                return
        try:
            image = self._store(candidate, result, character, verdict)
        except (ValidationError, IntegrityError) as exc:
            # Another batch (or the gallery) added the same bytes meanwhile: the unique constraint says so.
            if DatasetImage.objects.filter(character=character, sha256=checked.sha256).exists():
                report.duplicate += 1
                report.note(f"{candidate.label}: already in {character.name}'s dataset")
            else:
                report.unreadable += 1
                detail = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
                report.note(f"{candidate.label}: refused ({detail})")
            return
        self.batch_index.add(phash=result.phash, sha256=checked.sha256, ref=candidate.label)
        self._index(character.pk).add(phash=result.phash, sha256=checked.sha256, ref=image.pk)
        report.added += 1

    def _duplicate(
        self, candidate: Candidate, result: Analysed, index: PhashIndex, where: str, character: Character | None
    ) -> bool:
        match = index.find(phash=result.phash, sha256=result.checked.sha256)
        if match is None:
            return False
        self.report.duplicate += 1
        what = "the same file as" if match.exact else f"a near-duplicate (distance {match.distance}) of"
        other = f"dataset image #{match.ref}" if where == "dataset" else f"{match.ref} in this batch"
        note = f"{what} {other}"
        self.report.reasons.setdefault("duplicate", note)
        # The same bytes again add nothing; a near-duplicate may be a wanted variant, so it is kept aside.
        if not match.exact and self._hold(
            candidate,
            result,
            reason=HeldReason.DUPLICATE,
            note=note,
            character=character,
            duplicate_of_id=match.ref if where == "dataset" else None,
        ):
            note += "; kept aside, it can be added anyway"
        self.report.note(f"{candidate.label}: {note}")
        return True

    def _hold(
        self,
        candidate: Candidate,
        result: Analysed,
        *,
        reason: str,
        note: str,
        character: Character | None = None,
        duplicate_of_id: int | None = None,
    ) -> bool:
        """Keep an image that is not added (with its thumbnail), so a person can add it later."""
        checked = result.checked
        held = HeldImage(
            batch=self.batch,
            reason=reason,
            note=note[:500],
            character=character,
            duplicate_of_id=duplicate_of_id,
            width=checked.width,
            height=checked.height,
            sha256=checked.sha256,
            phash=result.phash_hex,
            source=candidate.source,
            source_ref=candidate.label[:500],
            caption=candidate.caption,
        )
        storage = held.image.storage
        stored: list[str] = []
        try:
            with transaction.atomic():
                held.image.save(checked.storage_name(), ContentFile(checked.data), save=False)
                stored.append(stored_name(held.image))
                stored.append(storage.save(thumbnail_name(stored_name(held.image)), ContentFile(result.thumbnail)))
                held.save()
        except (OSError, ValidationError, IntegrityError):
            log.warning("could not keep %s of batch %s aside", candidate.label, self.batch.pk, exc_info=True)
            for name in stored:
                storage.delete(name)
            return False
        self.report.held += 1
        return True

    def _classification(self, candidate: Candidate, result: Analysed) -> Any:
        if self._classify is None or not self._characters:
            return None
        try:
            return self._classify(
                project=self.project, data=result.checked.data, candidates=list(self._characters.values())
            )
        except Exception as exc:  # the classifier is another part's code; one image must not end the batch
            log.warning("classification failed for %s in batch %s", candidate.label, self.batch.pk, exc_info=True)
            self.report.note(f"{candidate.label}: classification failed ({exc.__class__.__name__})")
            return None

    def _store(self, candidate: Candidate, result: Analysed, character: Character, verdict: Any) -> DatasetImage:
        checked = result.checked
        image = DatasetImage(
            character=character,
            sha256=checked.sha256,
            phash=result.phash_hex,
            width=checked.width,
            height=checked.height,
            source=candidate.source,
            source_ref=candidate.label[:500],
            ingest_batch=self.batch,
            caption=candidate.caption,
            caption_source=CaptionSource.TAGS if candidate.caption else CaptionSource.NONE,
        )
        if verdict is not None and verdict.character_id in self._characters:
            image.classified_character_id = verdict.character_id
            image.classification_confidence = min(1.0, max(0.0, float(verdict.confidence)))
            image.classification_method = (verdict.method or "")[:16]
        for hook in self.hooks:
            hook(candidate, result, image)
        storage = image.image.storage
        stored: list[str] = []
        try:
            with transaction.atomic():
                image.image.save(checked.storage_name(), ContentFile(checked.data), save=False)
                stored.append(stored_name(image.image))
                stored.append(storage.save(thumbnail_name(stored_name(image.image)), ContentFile(result.thumbnail)))
                # Constraints are left to the database: validating them here costs four queries an image,
                # and the one that can fail (the same bytes twice) is caught as an IntegrityError.
                image.full_clean(exclude=["image"], validate_constraints=False)
                image.save()
        except BaseException:
            for name in stored:
                storage.delete(name)
            raise
        return image
