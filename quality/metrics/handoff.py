"""What a phase hands to the next: the sheet's best pose, the loop's best frame. Django-free.

- Phase 1 → 2: the sheet is split into its panels (``quality.metrics.sheet``); the best panel is
  the one whose face is most similar to the character's references (the ``per_panel`` list of the
  sheet's ``face_quality`` details). When no panel has a similarity (no face found, the model's
  weights missing), panel 0 — the first pose, the front view — is handed on.
- Phase 2 → 3: the best frame of the loop is the sharpest (variance of the Laplacian,
  ``quality.metrics.pixel.sharpness``), the earliest on a tie: a video started from a blurred
  in-between frame starts blurred. (The loop is not scored per frame for face similarity, so
  sharpness is the one per-frame measure there is.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from quality.metrics.pixel import sharpness
from quality.metrics.sheet import split_panels


def sheet_panels(image: np.ndarray, columns: int, rows: int) -> list[np.ndarray]:
    """The sheet's panels, row by row (each ``width/columns`` × ``height/rows``)."""
    return split_panels(image, columns, rows)


def best_panel_index(panel_scores: Sequence[float | None]) -> int:
    """The panel with the highest face similarity (the first of equals); 0 when none has one."""
    best, best_score = 0, -math.inf
    for index, score in enumerate(panel_scores or ()):
        if score is None or not math.isfinite(score):
            continue
        if score > best_score:
            best, best_score = index, float(score)
    return best


def best_frame_index(frames: Sequence[np.ndarray]) -> int:
    """The sharpest frame of a clip, the earliest on a tie."""
    if not frames:
        raise ValueError("a clip without frames has no best frame")
    scores = [sharpness(frame) for frame in frames]
    return int(np.argmax(scores))  # argmax returns the first maximum
