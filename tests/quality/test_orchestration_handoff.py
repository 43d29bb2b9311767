"""What a phase hands on: the sheet's best pose and the loop's best frame (quality.metrics.handoff)."""

from __future__ import annotations

import hashlib
import io

import cv2
import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image

from generation.models import Asset, InputImage
from quality.metrics.handoff import best_frame_index, best_panel_index, sheet_panels
from quality.models import QualityScore
from quality.services.handoff import handoff_image
from tests.factories import make_project


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


# --- The orchestration's hand-over on stored assets ------------------------------------------


def stored_asset(project, image: np.ndarray, **fields) -> Asset:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    asset = Asset(
        project=project, mime="image/png", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), **fields
    )
    asset.file.save("sheet.png", ContentFile(data), save=False)
    asset.save()
    return asset


def loaded(image) -> np.ndarray:
    with image.file.open("rb") as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


@pytest.mark.django_db
def test_a_scored_sheet_hands_on_its_most_similar_pose_as_an_input_image(owner):
    project = make_project(owner)
    sheet = synthetic_sheet()
    asset = stored_asset(project, sheet, metadata={"sheet_layout": {"columns": 4, "rows": 2}})
    per_panel = [0.41, None, 0.62, 0.55, 0.3, 0.91, None, 0.7]
    QualityScore.objects.create(asset=asset, metric="face_quality", value=0.5, details={"per_panel": per_panel})

    image, record = handoff_image(project=project, user=owner, phase=1, asset=asset)

    assert (record["panel"], record["asset"], record["why"]) == (5, asset.pk, "highest face similarity")
    assert (image.project_id, image.width, image.height) == (project.pk, 256, 512)
    assert np.array_equal(loaded(image), sheet[512:1024, 256:512])
    # The same pose handed on again is the same input image (stored by content).
    again, _ = handoff_image(project=project, user=owner, phase=1, asset=asset)
    assert again.pk == image.pk and InputImage.objects.filter(project=project).count() == 1


@pytest.mark.django_db
def test_an_unscored_sheet_hands_on_the_front_view_and_a_plain_image_goes_whole(owner):
    project = make_project(owner)
    sheet = synthetic_sheet()
    asset = stored_asset(project, sheet, metadata={"sheet_layout": {"columns": 4, "rows": 2}})

    image, record = handoff_image(project=project, user=owner, phase=1, asset=asset)

    assert record["panel"] == 0 and np.array_equal(loaded(image), sheet[:512, :256])
    plain = stored_asset(project, sheet[:64, :64])
    assert handoff_image(project=project, user=owner, phase=1, asset=plain) == (
        None,
        {"asset": plain.pk, "reason": "not a character sheet: handed on whole"},
    )
