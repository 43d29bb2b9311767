"""Sparklines of per-frame-pair temporal scores, as geometry for an inline SVG (no JS, no CDN).

Django-free: :func:`sparkline` turns a series into polyline points in a ``width`` × ``height``
box, with vertical marks at segment joins and, for loops, the seam (last → first frame) as one
more point after the series. :func:`temporal_chart` picks the series from stored score details:
temporal LPIPS per pair when it ran, else the mean absolute difference per pair that flicker uses
(weight-free, so every clip gets a chart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WIDTH = 240
HEIGHT = 48
PAD = 3.0


@dataclass(frozen=True)
class Mark:
    x: float
    label: str


@dataclass(frozen=True)
class Sparkline:
    title: str
    points: str  # "x,y x,y …" for <polyline points>
    width: int
    height: int
    low: float
    high: float
    count: int
    joins: list[Mark] = field(default_factory=list)
    seam: tuple[float, float] | None = None  # (x, y) of the last → first step
    seam_value: float | None = None
    seam_from: tuple[float, float] | None = None  # the series' last point, where the seam line starts


def sparkline(
    values: Sequence[float],
    *,
    title: str,
    joins: Sequence[int] = (),
    seam: float | None = None,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> Sparkline | None:
    """Geometry of ``values`` (pair t−1 → t at index t−1); ``joins`` are frame indices. None if empty."""
    series = [float(v) for v in values]
    if not series:
        return None
    everything = series + ([float(seam)] if seam is not None else [])
    low, high = min(everything), max(everything)
    span = high - low or 1.0
    slots = len(everything)
    step = (width - 2 * PAD) / max(1, slots - 1)

    def x(i: float) -> float:
        return round(PAD + i * step if slots > 1 else width / 2, 2)

    def y(v: float) -> float:
        return round(height - PAD - (v - low) / span * (height - 2 * PAD), 2)

    points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(series))
    # Join j starts a new segment: the step across it is pair j−1 → j, at index j−1.
    marks = [Mark(x(j - 1), f"join at frame {j}") for j in joins if 1 <= j <= len(series)]
    seam_point = (x(len(series)), y(seam)) if seam is not None else None
    return Sparkline(
        title=title,
        points=points,
        width=width,
        height=height,
        low=low,
        high=high,
        count=len(series),
        joins=marks,
        seam=seam_point,
        seam_value=seam,
        seam_from=(x(len(series) - 1), y(series[-1])) if seam is not None else None,
    )


def temporal_chart(details_by_metric: Mapping[str, Mapping[str, Any]]) -> Sparkline | None:
    """The chart of one clip from its scores' details (``{metric: details}``), or None for a still."""
    joins = [int(row["frame"]) for row in details_by_metric.get("join_ssim", {}).get("joins", []) if "frame" in row]
    seam = details_by_metric.get("loop_seamlessness") or {}
    lpips = details_by_metric.get("temporal_lpips", {}).get("per_pair")
    if lpips:
        return sparkline(lpips, title="temporal LPIPS per frame pair", joins=joins, seam=seam.get("seam_lpips"))
    diffs = details_by_metric.get("temporal_flicker", {}).get("per_pair")
    if diffs:
        return sparkline(
            diffs, title="mean abs. difference per frame pair", joins=joins, seam=seam.get("seam_abs_diff")
        )
    return None
