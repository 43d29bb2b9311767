"""Hand-over between orchestration phases: the part of a passed phase's output the next phase starts from."""

from __future__ import annotations

import io
import logging
from typing import Any

from django.contrib.auth.models import User
from PIL import Image as PILImage

from generation.models import Asset, InputImage, JobKind
from projects.models import Project
from quality.models import QualityScore

logger = logging.getLogger(__name__)


def handoff_image(
    *, project: Project, user: User | None, phase: int, asset: Asset
) -> tuple[InputImage | None, dict[str, Any]]:
    """The part of ``asset`` the next phase starts from, stored as an input image of the project.

    Phase 1 → 2: the sheet's best pose (the panel with the highest face similarity in the sheet's
    ``face_quality`` details, else panel 0, the front view); phase 2 → 3: the loop's sharpest frame
    (``quality.metrics.handoff``). An asset that cannot be cut (unreadable, not a sheet) is handed
    on whole, as before, and the record says why.
    """
    from generation.services.inputs import input_image_create
    from quality.metrics.frames import load_frames
    from quality.metrics.handoff import best_frame_index, best_panel_index, sheet_panels
    from quality.metrics.sheet import sheet_layout

    metadata = asset.metadata if isinstance(asset.metadata, dict) else {}
    record: dict[str, Any] = {"asset": asset.pk}
    try:
        with asset.file.open("rb") as handle:
            frames = load_frames(handle.read())
        if phase == 1:
            if "sheet_layout" not in metadata and not (asset.job and asset.job.kind == JobKind.CHARACTER_SHEET):
                return None, {**record, "reason": "not a character sheet: handed on whole"}
            columns, rows = sheet_layout(metadata.get("sheet_layout"))
            panels = sheet_panels(frames[0], columns, rows)
            score = QualityScore.objects.filter(asset=asset, metric="face_quality").order_by("-created_at").first()
            per_panel = (score.details or {}).get("per_panel") if score else None
            scores = per_panel if isinstance(per_panel, list) and len(per_panel) == len(panels) else []
            index = best_panel_index(scores)
            picked, name = panels[index], f"sheet {asset.pk} panel {index + 1}.png"
            why = "highest face similarity" if any(v is not None for v in scores) else "no face scored: the first pose"
            record.update(panel=index, layout=[columns, rows], why=why)
        else:
            index = best_frame_index(frames)
            picked, name = frames[index], f"loop {asset.pk} frame {index + 1}.png"
            record.update(frame=index, frames=len(frames), why="sharpest frame")
        buffer = io.BytesIO()
        PILImage.fromarray(picked).save(buffer, format="PNG")
        buffer.seek(0)
        image, _ = input_image_create(project=project, user=user, upload=buffer, original_name=name)
    except Exception as exc:  # an unreadable output must not stop a passed phase: hand it on whole
        logger.warning("could not cut asset %s for phase %s: %s", asset.pk, phase + 1, exc)
        return None, {**record, "reason": f"could not be cut ({exc}): handed on whole"}
    record.update(input_image=image.pk, width=image.width, height=image.height)
    return image, record
