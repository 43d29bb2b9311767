"""The same temporal metrics computed the way VBench does: one metric at a time, pair by pair.

Each loop prepares the frames it needs itself and runs the network on both frames of every pair
(LPIPS as ``lpips.LPIPS.forward(a, b)`` is used). Used by the tests and ``bench/quality.py`` as the
baseline that ``temporal.temporal_metrics`` must equal to 1e-5 while doing less work.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from quality.metrics import pixel
from quality.metrics.temporal import (
    MAX_SIDE,
    flow_change,
    interpolation_score,
    join_results,
    seam_result,
    subject_term,
    to_tensor,
    trunk_features,
)

if TYPE_CHECKING:
    import torch
    from lpips import LPIPS


def _analysis(frame: np.ndarray, max_side: int) -> np.ndarray:
    return pixel.downscale(frame, max_side)


def _small(frame: np.ndarray, max_side: int, flow_side: int) -> np.ndarray:
    return pixel.downscale(_analysis(frame, max_side), flow_side)


def lpips_loop(
    frames: Sequence[np.ndarray], lp: LPIPS, device: torch.device | None, max_side: int = MAX_SIDE
) -> list[float]:
    import torch

    out = []
    with torch.inference_mode():
        for a, b in itertools.pairwise(frames):
            x = to_tensor([_analysis(a, max_side)], device)
            y = to_tensor([_analysis(b, max_side)], device)
            out.append(float(lp(x, y).item()))
    return out


def subject_consistency_loop(
    frames: Sequence[np.ndarray], lp: LPIPS, device: torch.device | None, max_side: int = MAX_SIDE
) -> float:
    """VBench's loop: each frame's feature once, compared with the previous and the first."""
    import torch

    total, first, former = 0.0, None, None
    with torch.inference_mode():
        for frame in frames:
            _, (feature,) = trunk_features(lp, to_tensor([_analysis(frame, max_side)], device))
            if first is None:
                first = feature
            else:
                assert former is not None
                total += subject_term(feature, former, first)
            former = feature
    return total / (len(frames) - 1)


def flicker_loop(frames: Sequence[np.ndarray], max_side: int = MAX_SIDE) -> list[float]:
    return [pixel.mean_abs_diff(_analysis(a, max_side), _analysis(b, max_side)) for a, b in itertools.pairwise(frames)]


def ssim_loop(frames: Sequence[np.ndarray], max_side: int = MAX_SIDE) -> list[float]:
    out = []
    for a, b in itertools.pairwise(frames):
        sa = pixel.ssim_stats(pixel.gray(_analysis(a, max_side)))
        sb = pixel.ssim_stats(pixel.gray(_analysis(b, max_side)))
        out.append(pixel.ssim_from_stats(sa, sb))
    return out


def flows_loop(
    frames: Sequence[np.ndarray], max_side: int = MAX_SIDE, flow_side: int = pixel.FLOW_MAX_SIDE
) -> list[np.ndarray]:
    return [
        pixel.farneback(pixel.gray(_small(a, max_side, flow_side)), pixel.gray(_small(b, max_side, flow_side)))
        for a, b in itertools.pairwise(frames)
    ]


def motion_smoothness_loop(
    frames: Sequence[np.ndarray], max_side: int = MAX_SIDE, flow_side: int = pixel.FLOW_MAX_SIDE
) -> float:
    scores = []
    for t in range(1, len(frames) - 1, 2):
        a, mid, b = (_small(frames[i], max_side, flow_side) for i in (t - 1, t, t + 1))
        scores.append(interpolation_score(a, b, mid, pixel.farneback(pixel.gray(a), pixel.gray(b))))
    return float(np.mean(scores))


def all_separately(
    frames: Sequence[np.ndarray],
    lp: LPIPS,
    device: torch.device | None,
    *,
    joins: Sequence[int] = (),
    loop: bool = False,
    max_side: int = MAX_SIDE,
    flow_side: int = pixel.FLOW_MAX_SIDE,
) -> dict[str, float]:
    """Every metric's value from its own loop (what ``temporal_metrics`` reports, as plain floats)."""
    scale = max(frames[0].shape[:2]) / max(_small(frames[0], max_side, flow_side).shape[:2])
    out = {
        "temporal_lpips": float(np.mean(lpips_loop(frames, lp, device, max_side))),
        "subject_consistency": subject_consistency_loop(frames, lp, device, max_side),
        "motion_smoothness": motion_smoothness_loop(frames, max_side, flow_side),
        "temporal_flicker": pixel.flicker_score(flicker_loop(frames, max_side)),
        "temporal_ssim": float(np.mean(ssim_loop(frames, max_side))),
        "flow_magnitude": float(
            np.mean([pixel.flow_magnitude(f) * scale for f in flows_loop(frames, max_side, flow_side)])
        ),
    }
    if loop:
        diffs = flicker_loop(frames, max_side)
        seam = pixel.mean_abs_diff(_analysis(frames[-1], max_side), _analysis(frames[0], max_side))
        seamless = seam_result(diffs, seam).value
        assert seamless is not None  # a scored result
        out["loop_seamlessness"] = seamless
    if joins:
        flows = flows_loop(frames, max_side, flow_side)
        changes = {t: flow_change(flows[t - 1], flows[t - 2]) for t in range(2, len(frames))}
        for result in join_results(sorted(joins), ssim_loop(frames, max_side), changes, len(frames), scale):
            if result.value is not None:
                out[result.metric] = result.value
    return out
