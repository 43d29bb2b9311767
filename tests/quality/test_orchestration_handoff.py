"""What a phase hands on: the sheet's best pose and the loop's best frame (quality.metrics.handoff)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from quality.metrics.handoff import best_frame_index, best_panel_index, sheet_panels


def synthetic_sheet() -> np.ndarray:
    """A 1024×1024 sheet of 4×2 panels, each a flat colour of its own (panel i has red = 20·i)."""
    sheet = np.zeros((1024, 1024, 3), dtype=np.uint8)
    for index in range(8):
        row, column = divmod(index, 4)
        sheet[row * 512 : (row + 1) * 512, column * 256 : (column + 1) * 256] = (20 * index, 100, 200)
    return sheet


def test_the_panel_with_the_highest_face_similarity_is_cut_out():
    sheet = synthetic_sheet()
    scores = [0.41, None, 0.62, 0.55, 0.3, 0.91, None, 0.7]

    index = best_panel_index(scores)
    panel = sheet_panels(sheet, 4, 2)[index]

    assert index == 5
    assert panel.shape == (512, 256, 3)
    assert np.array_equal(panel, sheet[512:1024, 256:512])
    assert panel[0, 0].tolist() == [100, 100, 200]  # panel 5's own colour, not a neighbour's


def test_without_any_score_the_first_pose_is_handed_on():
    assert best_panel_index([None] * 8) == 0
    assert best_panel_index([]) == 0
    assert best_panel_index([None, 0.5, 0.5]) == 1  # the first of equals


def test_the_sharpest_frame_of_a_clip_is_chosen():
    rng = np.random.default_rng(7)
    detail = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    frames = [cv2.GaussianBlur(detail, (9, 9), 3) for _ in range(12)]
    frames[7] = detail  # the one frame that keeps its detail

    assert best_frame_index(frames) == 7


def test_equally_sharp_frames_give_the_earliest():
    frame = np.full((32, 32, 3), 128, dtype=np.uint8)
    assert best_frame_index([frame] * 5) == 0
    with pytest.raises(ValueError):
        best_frame_index([])
