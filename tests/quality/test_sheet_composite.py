"""The pure parts of the phase gates: splitting a sheet, its face quality, the overall composite."""

from __future__ import annotations

import numpy as np
import pytest

from quality.metrics import MetricResult, Status
from quality.metrics.composite import WEIGHTS, overall
from quality.metrics.sheet import face_quality, sheet_layout, split_panels


def similar(value: float) -> MetricResult:
    return MetricResult.scored("character_similarity", value, model_id="buffalo_l")


def no_face() -> MetricResult:
    return MetricResult.no_subject("character_similarity", model_id="buffalo_l")


def test_layout_is_the_recorded_one_else_four_columns_by_the_poses_else_four_by_two():
    assert sheet_layout({"columns": 3, "rows": 1}) == (3, 1)
    assert sheet_layout({"columns": 0, "rows": 1}, poses=5) == (4, 2)
    assert sheet_layout(None, poses=12) == (4, 3)
    assert sheet_layout(None) == (4, 2)


def test_panels_are_cut_row_by_row():
    sheet = np.zeros((20, 40, 3), np.uint8)
    for i in range(8):
        r, c = divmod(i, 4)
        sheet[r * 10 : (r + 1) * 10, c * 10 : (c + 1) * 10] = i

    panels = split_panels(sheet, 4, 2)

    assert [p.shape for p in panels] == [(10, 10, 3)] * 8
    assert [int(p[0, 0, 0]) for p in panels] == list(range(8))


def test_face_quality_is_the_matched_share_times_their_mean_similarity():
    panels = [similar(0.9)] * 6 + [similar(0.5), no_face()]

    result = face_quality(panels, threshold=0.7)

    assert result.ok
    assert result.value == pytest.approx(6 / 8 * 0.9)
    assert (result.details["matched"], result.details["faces_found"], result.details["panels"]) == (6, 7, 8)


def test_face_quality_without_any_match_is_zero_and_without_weights_is_not_a_number():
    assert face_quality([no_face()] * 8, threshold=0.7).value == 0.0
    missing = MetricResult.unavailable("character_similarity", "buffalo_l")
    result = face_quality([missing] * 8, threshold=0.7)
    assert (result.status, result.value) == (Status.UNAVAILABLE, None)
    assert result.fix == "python manage.py fetch_models buffalo_l"


def clip_results(**overrides: MetricResult) -> dict[str, MetricResult]:
    results = {
        "subject_consistency": MetricResult.scored("subject_consistency", 0.9),
        "motion_smoothness": MetricResult.scored("motion_smoothness", 0.8),
        "temporal_flicker": MetricResult.scored("temporal_flicker", 1.0),
        "aesthetic": MetricResult.scored("aesthetic", 5.5),
        "character_similarity": MetricResult.scored("character_similarity", 0.35),
    }
    results.update(overrides)
    return results


def test_overall_is_the_documented_weighted_mean_of_normalised_metrics():
    with_character = overall(clip_results(), character=True, similarity_threshold=0.7)
    expected = 0.30 * 0.9 + 0.25 * 0.8 + 0.15 * 1.0 + 0.20 * 0.5 + 0.10 * 0.5
    assert with_character.value == pytest.approx(expected)
    assert with_character.details["components"]["aesthetic"]["normalised"] == pytest.approx(0.5)

    # Without a character its similarity is no component and the others are renormalised.
    alone = overall(clip_results(), character=False)
    assert alone.value == pytest.approx((expected - 0.10 * 0.5) / 0.90)
    assert "character_similarity" not in alone.details["components"]
    assert sum(WEIGHTS.values()) == pytest.approx(1.0)


def test_overall_is_not_evaluated_when_a_component_has_no_weights_and_zero_for_a_missing_face():
    missing = MetricResult.unavailable("aesthetic", "laion-aesthetic")
    result = overall(clip_results(aesthetic=missing), character=True, similarity_threshold=0.7)
    assert (result.status, result.value) == (Status.UNAVAILABLE, None)
    assert result.details["reason"].startswith("aesthetic did not run")
    assert result.fix == "python manage.py fetch_models laion-aesthetic"

    faceless = overall(clip_results(character_similarity=no_face()), character=True, similarity_threshold=0.7)
    assert faceless.ok and faceless.details["components"]["character_similarity"]["normalised"] == 0.0
