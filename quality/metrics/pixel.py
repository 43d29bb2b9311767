"""Weight-free measures: SSIM, flicker, optical flow, sharpness, palette distance (CIE Lab).

They always work (no model file), on H×W×3 uint8 RGB frames. Results are deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from quality.metrics.frames import FrameLike, as_rgb
from quality.metrics.results import MetricInputError, MetricResult

FLOW_MAX_SIDE = 256  # Farnebäck runs on frames scaled so their long side is at most this
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)


def downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return frame
    return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


# --- SSIM -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SsimStats:
    """A frame's local means and second moments (11×11 Gaussian, σ = 1.5), computed once a frame."""

    image: np.ndarray
    mu: np.ndarray
    var: np.ndarray


def _blur(x: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)


def ssim_stats(gray_frame: np.ndarray) -> SsimStats:
    mu = _blur(gray_frame)
    return SsimStats(gray_frame, mu, _blur(gray_frame * gray_frame) - mu * mu)


def ssim_from_stats(a: SsimStats, b: SsimStats) -> float:
    """Mean SSIM (Wang et al. 2004) of two grey frames; only the cross term is computed here."""
    cov = _blur(a.image * b.image) - a.mu * b.mu
    num = (2 * a.mu * b.mu + _C1) * (2 * cov + _C2)
    den = (a.mu * a.mu + b.mu * b.mu + _C1) * (a.var + b.var + _C2)
    return float(np.mean(num / den))


def ssim(a: FrameLike, b: FrameLike) -> float:
    """SSIM of two frames on their luma, in [-1, 1] (1: identical)."""
    fa, fb = as_rgb(a), as_rgb(b)
    if fa.shape != fb.shape:
        raise MetricInputError(f"frames differ in size: {fa.shape} and {fb.shape}")
    return ssim_from_stats(ssim_stats(gray(fa)), ssim_stats(gray(fb)))


# --- flicker, flow, sharpness -----------------------------------------------------------------


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(cv2.absdiff(a, b).mean())


def flicker_score(diffs: Sequence[float]) -> float:
    """VBench temporal flicker: (255 − mean absolute difference of consecutive frames) / 255."""
    return (255.0 - float(np.mean(diffs))) / 255.0


def farneback(prev_gray: np.ndarray, next_gray: np.ndarray) -> np.ndarray:
    """Dense flow prev → next (H×W×2, pixels of the given frames): prev(y) ≈ next(y + F(y))."""
    flow: np.ndarray = cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]  # the stubs lack None: "allocate the output"
        prev_gray.astype(np.uint8), next_gray.astype(np.uint8), None, 0.5, 3, 15, 3, 5, 1.2, 0
    )
    return flow


def flow_magnitude(flow: np.ndarray) -> float:
    return float(np.mean(np.linalg.norm(flow, axis=2)))


def sharpness(image: FrameLike) -> float:
    """Variance of the Laplacian of the luma: higher is sharper (a blur drops it sharply)."""
    return float(cv2.Laplacian(gray(as_rgb(image)).astype(np.float64), cv2.CV_64F).var())


# --- palette ----------------------------------------------------------------------------------

_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    match = _HEX.match(value.strip())
    if not match:
        raise MetricInputError(f"not a hex colour: {value!r}")
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (uint8, …×3) to CIE L*a*b* (D65), float64."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
    )
    xyz = linear @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def dominant_colours(image: FrameLike, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(k colours in Lab, their share of the image): k-means on a ≤64×64 copy, exact when ≤ k colours."""
    small = downscale(as_rgb(image), 64).reshape(-1, 3)
    unique, counts = np.unique(small, axis=0, return_counts=True)
    if len(unique) <= k:
        return rgb_to_lab(unique), counts / counts.sum()
    lab = rgb_to_lab(small).astype(np.float32)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1)
    _, labels, centres = cv2.kmeans(lab, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)  # type: ignore[call-overload]  # the stubs lack None: "allocate the labels"
    shares = np.bincount(labels.ravel(), minlength=k) / len(labels)
    return centres.astype(np.float64), shares


def palette_distance(image: FrameLike, palette: Sequence[str], *, k: int = 8) -> MetricResult:
    """How far the image's colours are from a character palette (hex list), as CIE76 ΔE*ab.

    For each palette colour: ΔE to the nearest of the image's ``k`` dominant colours; the value is
    their mean (0: every palette colour is present; ΔE ≈ 2.3 is a just-noticeable difference).
    """
    if not palette:
        return MetricResult.error("palette_distance", "the character has no palette")
    wanted = rgb_to_lab(np.array([hex_to_rgb(c) for c in palette], dtype=np.uint8))
    centres, shares = dominant_colours(image, k)
    dists = np.linalg.norm(wanted[:, None, :] - centres[None, :, :], axis=2)
    nearest = dists.min(axis=1)
    return MetricResult.scored(
        "palette_distance",
        float(nearest.mean()),
        per_colour={c: round(float(d), 3) for c, d in zip(palette, nearest, strict=True)},
        dominant_shares=[round(float(s), 4) for s in shares],
    )
