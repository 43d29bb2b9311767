"""Character sheets: their panels and their face quality (the phase-1 gate's metric). Django-free.

A sheet is a grid of equal panels with no spacing, 4 columns and ceil(n/4) rows for n poses
(``DEFAULT_COLUMNS`` × ``DEFAULT_ROWS`` when nothing says otherwise).

Face quality of a sheet, given each panel's ``character_similarity`` result:

    face_quality = (matched / panels) × mean(similarity of the matched panels)

where a panel is *matched* when a face was found in it and its best similarity to the character's
references is ≥ the character's similarity threshold; 0 when no panel matches. A sheet whose
eight faces all match at 0.9 scores 0.9; one with half of them matching at 0.9 scores 0.45. A panel
without a face counts as unmatched (a pose that lost the character's face is a defect of the
sheet). When similarity could not run at all (weights missing, no usable reference), the result
is that reason, never a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from quality.metrics.results import MetricInputError, MetricResult, Status

METRIC = "face_quality"
DEFAULT_COLUMNS = 4
DEFAULT_ROWS = 2


def sheet_layout(layout: Mapping[str, Any] | None = None, *, poses: int | None = None) -> tuple[int, int]:
    """(columns, rows): the recorded ``{"columns", "rows"}`` when valid, else 4 × ceil(poses/4),
    else the default 4 × 2."""
    if layout:
        try:
            columns, rows = int(layout["columns"]), int(layout["rows"])
        except (KeyError, TypeError, ValueError):
            columns = rows = 0
        if columns >= 1 and rows >= 1:
            return columns, rows
    if poses:
        return DEFAULT_COLUMNS, max(1, math.ceil(poses / DEFAULT_COLUMNS))
    return DEFAULT_COLUMNS, DEFAULT_ROWS


def split_panels(image: np.ndarray, columns: int, rows: int) -> list[np.ndarray]:
    """The sheet's panels, row by row (the remainder of an uneven division goes to no panel)."""
    height, width = image.shape[:2]
    ph, pw = height // rows, width // columns
    if ph < 1 or pw < 1:
        raise MetricInputError(f"a {width}×{height} image cannot hold {columns}×{rows} panels")
    return [image[r * ph : (r + 1) * ph, c * pw : (c + 1) * pw] for r in range(rows) for c in range(columns)]


def face_quality(panels: Sequence[MetricResult], *, threshold: float) -> MetricResult:
    """The sheet's face quality from its panels' similarity results (see the module docstring)."""
    if not panels:
        return MetricResult.error(METRIC, "the sheet has no panels")
    measured = [p for p in panels if p.status in (Status.OK, Status.NO_SUBJECT)]
    if len(measured) < len(panels):
        # Similarity could not run on some panel: the sheet cannot be judged from the rest.
        problem = next(p for p in panels if p.status not in (Status.OK, Status.NO_SUBJECT))
        details = {**problem.details, "panels": len(panels)}
        details.setdefault("reason", f"character similarity could not run ({problem.status.value})")
        return MetricResult(METRIC, problem.status, None, problem.model_id, details, problem.fix)
    values = [p.value if p.ok else None for p in panels]
    matched = [v for v in values if v is not None and v >= threshold]
    share = len(matched) / len(panels)
    mean = float(np.mean(matched)) if matched else 0.0
    model_id = next((p.model_id for p in panels if p.model_id), "")
    return MetricResult.scored(
        METRIC,
        share * mean,
        model_id=model_id,
        panels=len(panels),
        matched=len(matched),
        faces_found=sum(v is not None for v in values),
        mean_similarity=round(mean, 6),
        similarity_threshold=threshold,
        per_panel=[None if v is None else round(float(v), 6) for v in values],
    )
