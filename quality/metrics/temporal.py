"""Temporal metrics of loops and videos, each frame's features computed once and shared.

Every frame is decoded, scaled and passed through the AlexNet trunk once; its normalised LPIPS
features, its subject-consistency vector, its SSIM statistics and its small grey copy for optical
flow then serve every pair and every metric that needs them (only the previous two frames and the
first are kept, so memory does not grow with length). The trunk runs on batches of frames
(:data:`CPU_BATCH` on the CPU, 16 on CUDA). ``quality.metrics.reference`` computes the same
numbers the way VBench does, one metric and one frame pair at a time; the benchmark and tests
hold the two equal to 1e-5.

Definitions (n frames, pairs t = 1 … n−1):

- ``temporal_lpips``: mean LPIPS (AlexNet, v0.1) of consecutive frames; 0 = identical, lower is steadier.
- ``subject_consistency``: VBench: mean over t of (max(0, cos(f_t, f_t−1)) + max(0, cos(f_t, f_0))) / 2.
  VBench uses DINO ViT-B/16 features; Tower uses the AlexNet trunk LPIPS already runs (each
  layer's global-average-pooled activations, L2-normalised, concatenated), so the metric costs
  no extra network pass. Values run higher than VBench's DINO numbers on the same clip.
- ``motion_smoothness``: a weight-free stand-in for VBench's AMT interpolation error: for each odd
  frame t, Farnebäck flow F from frame t−1 to t+1 (on copies with long side ≤ 256), the frame is
  re-interpolated as ½·(I_t−1(x − ½F(x)) + I_t+1(x + ½F(x))) and scored (255 − mean abs error) / 255;
  the mean over odd frames. Linear motion re-interpolates well; jerky motion does not.
- ``temporal_flicker``: VBench: (255 − mean absolute difference of consecutive frames) / 255.
- ``temporal_ssim``: mean SSIM (luma, 11×11 Gaussian) of consecutive frames.
- ``flow_magnitude``: mean optical-flow length between consecutive frames, in pixels of the input.
- ``loop_seamlessness`` (``loop=True``): the last → first step against the typical step. With d the
  mean absolute difference, value = min(1, (median d_t + 1) / (d_seam + 1)); ``seamless`` when
  d_seam ≤ 2·median d_t + 1. LPIPS and SSIM of the seam are reported beside it.
- ``join_ssim`` / ``join_flow_discontinuity`` (``joins=[…]``, the first frame of each new segment):
  SSIM across each join, and how much the flow changes there (mean ‖F_j − F_j−1‖) relative to the
  median change between consecutive flows elsewhere (1 = like anywhere else).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from quality import weights
from quality.metrics import pixel
from quality.metrics.frames import MediaLike, load_frames
from quality.metrics.results import MetricInputError, MetricResult, TooFewFrames, WeightsMissing
from quality.metrics.runtime import MetricModels, load_lpips

if TYPE_CHECKING:  # torch loads in a second; the metrics import it when they run
    import torch
    from lpips import LPIPS

MAX_SIDE = 512  # LPIPS, SSIM and flicker run on frames whose long side is at most this
SEAM_TOLERANCE = 2.0
# Frames a trunk pass takes on the CPU: 4 at 512² cost under half the CPU of one at a time
# (bench/README.md) and keep about 40 MB of features alive.
CPU_BATCH = 4

TEMPORAL_METRICS = (
    "temporal_lpips",
    "subject_consistency",
    "motion_smoothness",
    "temporal_flicker",
    "temporal_ssim",
    "flow_magnitude",
)


# --- per-frame and per-pair pieces shared with the reference implementation ----------------------


def to_tensor(frames: Sequence[np.ndarray], device: torch.device | None) -> torch.Tensor:
    import torch

    batch = torch.from_numpy(np.stack(frames)).to(device).permute(0, 3, 1, 2).float()
    # Channels-last lets oneDNN run AlexNet's convolutions without reordering (a third less CPU).
    return (batch / 127.5 - 1.0).contiguous(memory_format=torch.channels_last)


def trunk_features(lp: LPIPS, batch: torch.Tensor) -> tuple[list[list[torch.Tensor]], list[np.ndarray]]:
    """For each frame of the batch: its unit-normalised LPIPS layer features and its subject vector."""
    import torch

    outs = lp.net.forward(lp.scaling_layer(batch))
    # lpips.normalize_tensor's x / (‖x‖ over channels + 1e-10), with the norm in one pass over the
    # whole batch instead of pow, sum and sqrt per frame (a tenth of the clip's CPU; equal to 1e-7).
    units = [o / (torch.linalg.vector_norm(o, dim=1, keepdim=True) + 1e-10) for o in outs]
    deep = [[u[i : i + 1] for u in units] for i in range(batch.shape[0])]
    pooled = [torch.nn.functional.normalize(o.mean(dim=(2, 3)), dim=1) for o in outs]
    subject = torch.cat(pooled, dim=1) / np.sqrt(len(pooled))
    return deep, list(subject.double().cpu().numpy())


def lpips_from_features(lp: LPIPS, a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    import torch

    total = 0.0
    with torch.inference_mode():
        for k, (fa, fb) in enumerate(zip(a, b, strict=True)):
            total += float(lp.lins[k](torch.square(fa - fb)).mean())
    return total


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def subject_term(f: np.ndarray, prev: np.ndarray, first: np.ndarray) -> float:
    return (max(0.0, cos(f, prev)) + max(0.0, cos(f, first))) / 2


def interpolation_score(prev_rgb: np.ndarray, next_rgb: np.ndarray, mid_rgb: np.ndarray, flow: np.ndarray) -> float:
    """(255 − MAE) / 255 of the middle frame re-interpolated from its neighbours along ``flow``."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    half = 0.5 * flow
    back = cv2.remap(prev_rgb, gx - half[..., 0], gy - half[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fwd = cv2.remap(next_rgb, gx + half[..., 0], gy + half[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    predicted = (back.astype(np.float32) + fwd.astype(np.float32)) / 2
    return (255.0 - float(np.abs(predicted - mid_rgb.astype(np.float32)).mean())) / 255.0


def flow_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.linalg.norm(a - b, axis=2)))


def seam_result(diffs: Sequence[float], seam_diff: float, **extra: Any) -> MetricResult:
    typical = float(np.median(diffs))
    value = min(1.0, (typical + 1.0) / (seam_diff + 1.0))
    return MetricResult.scored(
        "loop_seamlessness",
        value,
        seamless=seam_diff <= SEAM_TOLERANCE * typical + 1.0,
        seam_abs_diff=round(seam_diff, 4),
        typical_abs_diff=round(typical, 4),
        **extra,
    )


def join_results(
    joins: Sequence[int], ssims: Sequence[float], changes: dict[int, float], n: int, scale: float
) -> list[MetricResult]:
    """``ssims[t-1]`` is SSIM(t−1, t); ``changes[t]`` is ‖F_t − F_t−1‖ for t ≥ 2."""
    typical_ssim = float(np.median(ssims))
    typical_change = float(np.median(list(changes.values()))) if changes else 0.0
    rows = []
    for j in joins:
        row: dict[str, float | int | None] = {"frame": j, "ssim": round(ssims[j - 1], 6)}
        change = changes.get(j)
        row["flow_change_px"] = None if change is None else round(change * scale, 4)
        row["flow_change_ratio"] = None if change is None else round((change + 0.05) / (typical_change + 0.05), 4)
        rows.append(row)
    ratios = [r["flow_change_ratio"] for r in rows if r["flow_change_ratio"] is not None]
    out = [MetricResult.scored("join_ssim", min(ssims[j - 1] for j in joins), joins=rows, typical_ssim=typical_ssim)]
    if ratios:
        out.append(MetricResult.scored("join_flow_discontinuity", float(max(ratios)), joins=rows))
    else:
        out.append(MetricResult.error("join_flow_discontinuity", "a join needs two frames before it"))
    return out


def check_joins(joins: Sequence[int], n: int) -> list[int]:
    out = sorted(set(int(j) for j in joins))
    if any(j < 1 or j >= n for j in out):
        raise MetricInputError(f"joins must be frame indices between 1 and {n - 1}")
    return out


# --- the shared implementation ----------------------------------------------------------------


@dataclass
class _Frame:
    rgb: np.ndarray  # analysis size
    small_rgb: np.ndarray  # flow size
    small_gray: np.ndarray
    ssim: pixel.SsimStats
    deep: list[torch.Tensor] | None
    subject: np.ndarray | None


def _frames(
    frames: Sequence[np.ndarray],
    lp: LPIPS | None,
    device: torch.device | None,
    batch: int,
    max_side: int,
    flow_side: int,
) -> Iterator[_Frame]:
    for start in range(0, len(frames), batch):
        chunk = [pixel.downscale(f, max_side) for f in frames[start : start + batch]]
        deep: list[list[torch.Tensor] | None] = [None] * len(chunk)
        subject: list[np.ndarray | None] = [None] * len(chunk)
        if lp is not None:
            import torch

            with torch.inference_mode():
                d, s = trunk_features(lp, to_tensor(chunk, device))
            deep, subject = list(d), list(s)
        for i, rgb in enumerate(chunk):
            small = pixel.downscale(rgb, flow_side)
            yield _Frame(rgb, small, pixel.gray(small), pixel.ssim_stats(pixel.gray(rgb)), deep[i], subject[i])


def temporal_metrics(
    media: MediaLike,
    *,
    models: MetricModels | None,
    joins: Sequence[int] = (),
    loop: bool = False,
    max_side: int = MAX_SIDE,
    flow_side: int = pixel.FLOW_MAX_SIDE,
    batch: int | None = None,
) -> dict[str, MetricResult]:
    """All temporal metrics of one clip, by metric name (see the module docstring).

    ``models=None`` (or a missing AlexNet file) gives ``temporal_lpips`` and
    ``subject_consistency`` as "unavailable" with the fetch command; the rest are weight-free.
    Raises :class:`TooFewFrames` for fewer than two frames and the ``frames`` errors for bad media.
    """
    frames = load_frames(media)
    n = len(frames)
    if n < 2:
        raise TooFewFrames(f"temporal metrics need at least 2 frames (got {n})")
    join_list = check_joins(joins, n)
    lp, missing = None, None
    device: torch.device | None = None
    if models is not None:
        try:
            lp = load_lpips(models)
            device = models.torch_device
        except WeightsMissing as exc:
            missing = exc
    if batch is None:
        batch = 16 if getattr(device, "type", "cpu") == "cuda" else CPU_BATCH
    scale = max(frames[0].shape[:2]) / max(pixel.downscale(pixel.downscale(frames[0], max_side), flow_side).shape[:2])

    lp_values, subj_terms, diffs, ssims, mags, interp = [], [], [], [], [], []
    changes: dict[int, float] = {}
    first: _Frame | None = None
    prev: _Frame | None = None
    prev2: _Frame | None = None
    prev_flow: np.ndarray | None = None
    for t, cur in enumerate(_frames(frames, lp, device, batch, max_side, flow_side)):
        if first is None:
            first = cur
        if prev is not None:
            if lp is not None:  # then every frame has its features
                assert prev.deep and cur.deep and cur.subject is not None and prev.subject is not None
                assert first.subject is not None
                lp_values.append(lpips_from_features(lp, prev.deep, cur.deep))
                subj_terms.append(subject_term(cur.subject, prev.subject, first.subject))
            diffs.append(pixel.mean_abs_diff(prev.rgb, cur.rgb))
            ssims.append(pixel.ssim_from_stats(prev.ssim, cur.ssim))
            flow = pixel.farneback(prev.small_gray, cur.small_gray)
            mags.append(pixel.flow_magnitude(flow) * scale)
            if prev_flow is not None:
                changes[t] = flow_change(flow, prev_flow)
            prev_flow = flow
        if prev2 is not None and prev is not None and t % 2 == 0:
            skip = pixel.farneback(prev2.small_gray, cur.small_gray)
            interp.append(interpolation_score(prev2.small_rgb, cur.small_rgb, prev.small_rgb, skip))
        prev2, prev = prev, cur
    assert first is not None and prev is not None

    results: dict[str, MetricResult] = {}
    if lp is not None:
        results["temporal_lpips"] = MetricResult.scored(
            "temporal_lpips", float(np.mean(lp_values)), model_id="alexnet", per_pair=_r(lp_values)
        )
        results["subject_consistency"] = MetricResult.scored(
            "subject_consistency", float(np.mean(subj_terms)), model_id="alexnet", per_frame=_r(subj_terms)
        )
    else:
        reason = str(missing) if missing else "no models directory given"
        for name in ("temporal_lpips", "subject_consistency"):
            results[name] = MetricResult.unavailable(name, weights.ALEXNET[0], reason)
    if interp:
        results["motion_smoothness"] = MetricResult.scored(
            "motion_smoothness", float(np.mean(interp)), per_odd_frame=_r(interp)
        )
    else:
        results["motion_smoothness"] = MetricResult.error("motion_smoothness", "needs at least 3 frames")
    results["temporal_flicker"] = MetricResult.scored(
        "temporal_flicker", pixel.flicker_score(diffs), per_pair=_r(diffs)
    )
    results["temporal_ssim"] = MetricResult.scored("temporal_ssim", float(np.mean(ssims)), per_pair=_r(ssims))
    results["flow_magnitude"] = MetricResult.scored("flow_magnitude", float(np.mean(mags)), per_pair=_r(mags))
    if loop:
        extra: dict[str, object] = {"seam_ssim": round(pixel.ssim_from_stats(prev.ssim, first.ssim), 6)}
        if lp is not None:
            assert prev.deep and first.deep
            extra["seam_lpips"] = round(lpips_from_features(lp, prev.deep, first.deep), 6)
            extra["typical_lpips"] = round(float(np.median(lp_values)), 6)
        results["loop_seamlessness"] = seam_result(diffs, pixel.mean_abs_diff(prev.rgb, first.rgb), **extra)
    if join_list:
        for result in join_results(join_list, ssims, changes, n, scale):
            results[result.metric] = result
    return results


def _r(values: Sequence[float]) -> list[float]:
    return [round(float(v), 6) for v in values]
