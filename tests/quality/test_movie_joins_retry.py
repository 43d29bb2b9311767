"""What a failing join's retry changes (quality.movie.learning.adjusted_params): by what failed, bounded."""

from __future__ import annotations

import pytest

from quality.models import JoinEvaluation
from quality.movie.learning import adjusted_params
from tests.generation.engine_helpers import shipped


def verdict(*, ssim_ok: bool, flow_ok: bool) -> JoinEvaluation:
    passed = ssim_ok and flow_ok
    return JoinEvaluation(passed=passed, details={"passed_ssim": ssim_ok, "passed_flow": flow_ok, "reasons": []})


@pytest.fixture
def weightless(db):
    return shipped("weightless-segment")


@pytest.fixture
def svd(db):
    return shipped("svd-segment")


def test_a_jump_in_the_picture_lowers_the_weightless_discontinuity_from_the_templates_value(weightless):
    params = {"discontinuity": 0.8, "motion": 4}
    retry = adjusted_params(template=weightless, params=params, join=verdict(ssim_ok=False, flow_ok=True), attempt=1)
    assert retry == {"discontinuity": 0.4, "motion": 4}  # motion is not what failed
    assert params == {"discontinuity": 0.8, "motion": 4}  # the caller's dict is left alone


def test_a_motion_jump_calms_the_motion_too_starting_from_the_template_when_unset(weightless):
    retry = adjusted_params(template=weightless, params={}, join=verdict(ssim_ok=True, flow_ok=False), attempt=1)
    # discontinuity's graph value is 0 (it stays 0), motion's is 4 pixels a frame.
    assert retry == {"discontinuity": 0.0, "motion": 3.0}


def test_svd_knobs_follow_what_failed_and_unbound_knobs_are_not_added(svd):
    flow = adjusted_params(
        template=svd, params={"motion_bucket": 127}, join=verdict(ssim_ok=True, flow_ok=False), attempt=1
    )
    assert flow == {"motion_bucket": 95}
    ssim = adjusted_params(
        template=svd, params={"denoise": 1.0, "augmentation": 0.2}, join=verdict(ssim_ok=False, flow_ok=True), attempt=1
    )
    assert ssim == {"denoise": 0.9, "augmentation": 0.1}
    assert "discontinuity" not in ssim and "motion" not in flow  # svd-segment binds neither


def test_repeated_retries_stay_within_each_knobs_range(svd, weightless):
    both = verdict(ssim_ok=False, flow_ok=False)
    params = {"denoise": 1.0, "motion_bucket": 255, "augmentation": 1.0}
    for attempt in range(1, 20):
        params = adjusted_params(template=svd, params=params, join=both, attempt=attempt)
    assert params["denoise"] >= 0.3 and params["motion_bucket"] >= 1 and params["augmentation"] >= 0.0
    # past MAX_STEPS (4) nothing moves any more: four steps of denoise from 1.0
    assert params["denoise"] == 0.6
    motion = {"motion": 64.0, "discontinuity": 1.0}
    for attempt in range(1, 4):
        motion = adjusted_params(template=weightless, params=motion, join=both, attempt=attempt)
    assert motion == {"motion": 27.0, "discontinuity": 0.125}


def test_a_passing_or_unevaluated_join_changes_nothing_and_the_change_is_deterministic(weightless):
    params = {"discontinuity": 0.6}
    assert (
        adjusted_params(template=weightless, params=params, join=verdict(ssim_ok=True, flow_ok=True), attempt=1)
        == params
    )
    unknown = JoinEvaluation(passed=None, details={"reason": "too few frames"})
    assert adjusted_params(template=weightless, params=params, join=unknown, attempt=1) == params
    failing = verdict(ssim_ok=False, flow_ok=True)
    first = adjusted_params(template=weightless, params=params, join=failing, attempt=2)
    assert (
        first == adjusted_params(template=weightless, params=params, join=failing, attempt=2) == {"discontinuity": 0.3}
    )
