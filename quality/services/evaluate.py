"""On-demand evaluation of an uploaded image or video, or of a stored asset, against a character.

It runs on a worker (``quality.services.evaluations``; the API has already refused uploads whose
header decodes to too many pixels), and what it accepts is bounded: the upload size
(``TOWER_UPLOAD_MAX_BYTES``), the pixels of a frame, and :data:`MAX_FRAMES` frames (about ten
seconds of 24 fps video; longer clips are scored by the workers when they are a job's output).
Bad media raise :class:`QualityError` (HTTP 400) with a message for people; for an asset the failed
evaluation is also recorded as a ``media`` score with status ``error``. For an asset, the results
are stored as its current scores (with their thresholds), but no gate is run: gates belong to jobs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from django.db import transaction
from PIL import Image, UnidentifiedImageError

from characters.models import Character
from generation.models import Asset
from projects.models import Project
from quality.metrics import MetricResult
from quality.models import QualityScore
from quality.services import common
from quality.services.common import QualityError
from quality.services.measure import measure, read_media
from quality.services.scoring import gate_thresholds, score_row
from quality.services.verdicts import assets_quality_refresh

MAX_FRAMES = 240


@dataclass
class Evaluation:
    frames: int
    thresholds: dict[str, float]
    results: list[MetricResult] = field(default_factory=list)
    asset: Asset | None = None


def _is_still_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError):
        return False


def media_evaluate(
    *,
    data: bytes,
    project: Project,
    character: Character | None = None,
    asset: Asset | None = None,
    max_bytes: int,
) -> Evaluation:
    """Score ``data`` (an upload, or ``asset``'s file) with every applicable metric."""
    if character is not None and character.project_id != project.pk:
        raise QualityError("that character belongs to another project")
    problem = ""
    if len(data) > max_bytes:
        problem = f"the file is {len(data):,} bytes; at most {max_bytes:,} are evaluated here"
        media = None
    else:
        media = read_media("upload", data, max_frames=MAX_FRAMES)
        if media.error:
            problem = media.error
            if "frames; at most" in problem or "more than" in problem:
                problem += " (evaluate shorter clips here; a job's outputs are scored by the workers)"
        elif not media.animated and not _is_still_image(data):
            problem = "the video has a single frame; a video needs at least 2 frames to be evaluated"
    if problem:
        if asset is not None:
            with transaction.atomic():
                QualityScore.objects.create(
                    asset=asset,
                    metric="media",
                    status="error",
                    passed=False,
                    character=character,
                    details={"reason": problem},
                )
                assets_quality_refresh(asset_ids=[asset.pk])
        raise QualityError(problem)
    assert media is not None and media.frames
    thresholds = gate_thresholds(project, character, animated=media.animated)
    results = measure([media], models=common.metric_models(), character=character)["upload"]
    if asset is not None:
        with transaction.atomic():
            QualityScore.objects.bulk_create(
                [score_row(asset, r, thresholds.get(r.metric), character.pk if character else None) for r in results]
            )
            assets_quality_refresh(asset_ids=[asset.pk])
    return Evaluation(frames=len(media.frames), thresholds=thresholds, results=results, asset=asset)
