"""Scoring a join (segment k → k+1, scene → scene) and gating it on the project's thresholds.

The join is judged on the frames as the film shows them: the last :data:`FRAMES_BEFORE` frames of
the earlier clip followed by the first :data:`FRAMES_AFTER` of the later one. A segment's first
frame repeats its predecessor's last frame (it was generated from it) and the assembly drops it, so
segment joins drop it here too, and so do scene joins whose first segment was started from the
previous scene's last frame; other scene joins keep every frame (a cut). The metrics are
``quality.metrics.temporal``'s weight-free ``join_ssim`` and ``join_flow_discontinuity``,
computed alone (:func:`join_metrics`: no AlexNet pass, no re-interpolation), so a join costs
eleven Farnebäck flows on 256-pixel copies and twelve frames' SSIM statistics.
"""

from __future__ import annotations

import io
from collections import deque
from typing import Any

import numpy as np
from django.db import transaction
from PIL import Image, UnidentifiedImageError

from generation.events import movie_event
from generation.models import Asset
from projects.models import Scene
from quality.metrics import pixel
from quality.metrics.frames import MAX_FRAMES, as_rgb
from quality.metrics.results import EmptyMedia, MetricInputError, MetricResult, UnreadableMedia
from quality.metrics.temporal import MAX_SIDE, check_joins, flow_change, join_results
from quality.models import JoinEvaluation, JoinKind, Segment

FRAMES_BEFORE = 6  # the flow-change ratio needs ≥ 3 before the join; 6 keep its median off the join
FRAMES_AFTER = 6
MIN_BEFORE = 3  # two flows before the join, so the change at the join exists
MIN_AFTER = 2  # the step into the later clip and one flow inside it
DROPPED = ", its duplicated first frame dropped"


def join_evaluate(
    *, scene: Scene, segment: Segment | None, before: Asset, after: Asset, kind: str, attempt: int
) -> JoinEvaluation:
    """Score the join from ``before`` into ``after``, gate it, write and return the row.

    ``passed`` is None (with ``details["reason"]``) when the join cannot be evaluated: a file that
    cannot be read, too few frames, frames of different sizes. ``segment`` (the later side) gets the
    verdict in ``join_ssim`` / ``join_flow`` / ``join_passed`` (on the row and on the instance), and
    ``join_evaluated`` is sent after commit.
    """
    if kind not in JoinKind.values:
        raise ValueError(f"unknown join kind {kind!r}")
    project = scene.episode.project
    gate = {"ssim_min": project.join_ssim_min, "flow_max": project.join_flow_max}
    verdict = join_measure(
        _read(before, tail=FRAMES_BEFORE),
        _read(after, head=FRAMES_AFTER + 1),
        drop_first=continues(kind=kind, segment=segment, before=before),
        ssim_min=gate["ssim_min"],
        flow_max=gate["flow_max"],
    )
    with transaction.atomic():
        row = JoinEvaluation.objects.create(
            project=project,
            scene=scene,
            kind=kind,
            segment=segment,
            before=before,
            after=after,
            attempt=attempt,
            ssim=verdict["ssim"],
            flow_discontinuity=verdict["flow_discontinuity"],
            passed=verdict["passed"],
            details=verdict["details"],
        )
        if segment is not None:  # the later side: its join fields are this join's
            segment.join_ssim, segment.join_flow, segment.join_passed = row.ssim, row.flow_discontinuity, row.passed
            Segment.objects.filter(pk=segment.pk).update(
                join_ssim=row.ssim, join_flow=row.flow_discontinuity, join_passed=row.passed
            )
        movie_event(
            "join_evaluated",
            project_id=project.pk,
            episode_id=scene.episode_id,
            scene_id=scene.pk,
            join=row.pk,
            kind=kind,
            segment=None if segment is None else segment.pk,
            number=None if segment is None else segment.number,
            attempt=attempt,
            ssim=row.ssim,
            flow_discontinuity=row.flow_discontinuity,
            passed=row.passed,
            reasons=row.details.get("reasons", []),
        )
    return row


def continues(*, kind: str, segment: Segment | None, before: Asset) -> bool:
    """Whether the later clip starts from the earlier one's last frame (so that frame shows once)."""
    if kind == JoinKind.SEGMENT:
        return True
    if segment is None or segment.first_frame_id is None:
        return False
    return Segment.objects.filter(output=before, last_frame_id=segment.first_frame_id).exists()


def join_measure(
    before: list[np.ndarray] | str,
    after: list[np.ndarray] | str,
    *,
    drop_first: bool,
    ssim_min: float,
    flow_max: float,
) -> dict[str, Any]:
    """The join metrics and verdict of two clips' frames (or the reason each side could not be read).

    Returns ``{"ssim", "flow_discontinuity", "passed", "details"}``; Django-free, for the bench too.
    """
    details: dict[str, Any] = {"ssim_min": ssim_min, "flow_max": flow_max}
    unreadable = [f"{side}: {v}" for side, v in (("before", before), ("after", after)) if isinstance(v, str)]
    if unreadable:
        return _unevaluated(details, "cannot be read: " + "; ".join(unreadable))
    assert not isinstance(before, str) and not isinstance(after, str)
    tail = before[-FRAMES_BEFORE:]
    head = after[1 : FRAMES_AFTER + 1] if drop_first else after[:FRAMES_AFTER]
    details.update(frames_before=len(tail), frames_after=len(head), dropped_first_frame=drop_first)
    if len(tail) < MIN_BEFORE or len(head) < MIN_AFTER:
        return _unevaluated(
            details,
            f"too few frames: {len(tail)} before the join (at least {MIN_BEFORE}) and "
            f"{len(head)} after it (at least {MIN_AFTER}{DROPPED if drop_first else ''})",
        )
    if tail[0].shape != head[0].shape:
        sizes = " and ".join(f"{f.shape[1]}×{f.shape[0]}" for f in (tail[0], head[0]))
        return _unevaluated(details, f"the clips differ in size ({sizes})")
    ssim_r, flow_r = join_metrics([*tail, *head], len(tail))
    if not ssim_r.ok or not flow_r.ok:
        return _unevaluated(details, str((flow_r if ssim_r.ok else ssim_r).details.get("reason", "not scored")))
    assert ssim_r.value is not None and flow_r.value is not None
    ssim, flow = round(ssim_r.value, 6), round(flow_r.value, 4)
    reasons = []
    if ssim < ssim_min:
        reasons.append(f"SSIM across the join {ssim:.3f} is below {ssim_min:.3f}")
    if flow > flow_max:
        reasons.append(f"the motion changes {flow:.2f}× as much across the join as elsewhere (at most {flow_max:.2f})")
    join_row = ssim_r.details["joins"][0]
    details.update(
        ssim=ssim,
        flow_discontinuity=flow,
        typical_ssim=round(float(ssim_r.details["typical_ssim"]), 6),
        flow_change_px=join_row["flow_change_px"],
        passed_ssim=ssim >= ssim_min,
        passed_flow=flow <= flow_max,
        reasons=reasons,
    )
    return {"ssim": ssim, "flow_discontinuity": flow, "passed": not reasons, "details": details}


def join_metrics(frames: list[np.ndarray], join: int) -> list[MetricResult]:
    """``join_ssim`` and ``join_flow_discontinuity`` of ``frames`` at ``join``, as ``temporal_metrics``
    computes them (same sizes, SSIM, Farnebäck flows and :func:`~quality.metrics.temporal.join_results`)
    without what only the clip metrics need (the skip-frame flows and their re-interpolation).
    """
    n = len(frames)
    check_joins([join], n)
    rgb = [pixel.downscale(f, MAX_SIDE) for f in frames]
    stats = [pixel.ssim_stats(pixel.gray(f)) for f in rgb]
    small = [pixel.gray(pixel.downscale(f, pixel.FLOW_MAX_SIDE)) for f in rgb]
    scale = max(frames[0].shape[:2]) / max(small[0].shape[:2])
    ssims = [pixel.ssim_from_stats(stats[t - 1], stats[t]) for t in range(1, n)]
    flows = [pixel.farneback(small[t - 1], small[t]) for t in range(1, n)]  # flows[t - 1]: t−1 → t
    changes = {t: flow_change(flows[t - 1], flows[t - 2]) for t in range(2, n)}
    return join_results([join], ssims, changes, n, scale)


def _unevaluated(details: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "ssim": None,
        "flow_discontinuity": None,
        "passed": None,
        "details": {**details, "reason": reason, "reasons": [reason]},
    }


def _read(asset: Asset, *, head: int = 0, tail: int = 0) -> list[np.ndarray] | str:
    """The first ``head`` or last ``tail`` frames of an asset's file, or why they cannot be had."""
    try:
        with asset.file.open("rb") as handle:
            data = handle.read()
    except (OSError, ValueError) as exc:  # ValueError: an asset with no file name
        return f"asset {asset.pk}'s file cannot be opened ({exc.__class__.__name__})"
    try:
        return clip_frames(data, head=head, tail=tail)
    except MetricInputError as exc:
        return f"asset {asset.pk}: {exc}"


def clip_frames(data: bytes, *, head: int = 0, tail: int = 0) -> list[np.ndarray]:
    """The first ``head`` frames (or, with ``tail``, the last ``tail``) of an image, animation or video.

    Only those frames are kept while decoding, and a video's decoding stops after its head, so a
    long clip costs neither memory nor (for the head) its whole decode.
    """
    if (head > 0) == (tail > 0):
        raise ValueError("give head or tail")
    if not data:
        raise EmptyMedia("empty file")
    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError):
        return _video_frames(data, head, tail)
    with image:
        count = getattr(image, "n_frames", 1) or 1
        wanted = range(min(head, count)) if head else range(max(0, count - tail), count)
        frames = []
        try:
            for index in wanted:
                image.seek(index)
                frames.append(as_rgb(image))
        except (OSError, ValueError, EOFError) as exc:
            raise UnreadableMedia(f"the image is damaged ({exc})") from None
    return frames


def _video_frames(data: bytes, head: int, tail: int) -> list[np.ndarray]:
    import av

    kept: deque[np.ndarray] = deque(maxlen=head or tail)
    count = 0
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise UnreadableMedia("not an image or video Tower can read")
            for frame in container.decode(container.streams.video[0]):
                count += 1
                if count > MAX_FRAMES:
                    raise UnreadableMedia(f"more than {MAX_FRAMES} frames")
                kept.append(as_rgb(frame.to_ndarray(format="rgb24")))
                if head and count >= head:
                    break
    except av.FFmpegError as exc:
        raise UnreadableMedia(f"not an image or video Tower can read ({exc.__class__.__name__})") from None
    if not count:
        raise EmptyMedia("no frames")
    return list(kept)
