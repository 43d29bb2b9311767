"""How many segments a scene needs: its duration over the engine's segment length (Django-light, no writes).

A segment template binds ``frames`` (its length) and ``fps``; the segment after the first starts from
its predecessor's last frame, which assembly drops as a duplicate, so each later segment adds
``frames - 1`` new frames. N is the smallest count whose film lasts at least the scene's duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from generation.models import WorkflowTemplate
from generation.workflow import WorkflowError
from generation.workflow.apply import graph_values
from generation.workflow.bindings import resolve_bindings, style_parameters
from projects.models import Project
from quality.services.common import QualityError

MAX_SEGMENTS = 64  # what one request may plan (jobs_create's per-request bound, too)


class PlanError(QualityError):
    """A scene's segments cannot be planned as asked (the message says why)."""


@dataclass(frozen=True)
class SegmentPlan:
    segments: int
    frames: int  # per segment, as the template makes them
    fps: float
    seconds: float  # what the planned film lasts (duplicated first frames dropped)
    explicit: bool  # the request named the count

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "segments": self.segments,
            "frames": self.frames,
            "fps": self.fps,
            "seconds": round(self.seconds, 3),
            "explicit": self.explicit,
        }


def segment_length(*, template: WorkflowTemplate, project: Project) -> tuple[int, float]:
    """(frames, fps) of one segment: the template's ``frames`` value; ``fps`` from the project's style
    when the binding follows it (or the graph has none), else the graph's value."""
    try:
        targets = resolve_bindings(template.graph, template.bindings)
    except WorkflowError as exc:
        raise PlanError(f"template {template.slug!r} cannot be read: {exc}") from None
    if "frames" not in targets:
        raise PlanError(f"template {template.slug!r} binds no 'frames' input: its segment length is unknown")
    values = graph_values(template.graph, targets)
    try:
        frames = int(values["frames"])
    except (KeyError, TypeError, ValueError):
        raise PlanError(f"template {template.slug!r}'s 'frames' input holds no number") from None
    if frames < 1:
        raise PlanError(f"template {template.slug!r} makes {frames} frames a segment")
    fps: float | None = None
    if "fps" in targets and "fps" not in style_parameters(template.bindings):
        try:
            fps = float(values["fps"])
        except (KeyError, TypeError, ValueError):
            fps = None
    if not fps or fps <= 0:
        fps = float(project.style.fps)
    return frames, fps


def film_seconds(*, segments: int, frames: int, fps: float) -> float:
    total = frames + (segments - 1) * max(frames - 1, 0)
    return total / fps


def segments_plan(
    *, template: WorkflowTemplate, project: Project, duration_seconds: float, segments: int | None = None
) -> SegmentPlan:
    """N segments for a scene of ``duration_seconds`` (``segments`` given: that many, 1..MAX_SEGMENTS)."""
    frames, fps = segment_length(template=template, project=project)
    if segments is not None:
        if isinstance(segments, bool) or not isinstance(segments, int) or not 1 <= segments <= MAX_SEGMENTS:
            raise PlanError(f"segments must be a whole number from 1 to {MAX_SEGMENTS}")
        return SegmentPlan(segments, frames, fps, film_seconds(segments=segments, frames=frames, fps=fps), True)
    if not duration_seconds or duration_seconds <= 0:
        raise PlanError("the scene's duration must be more than 0 seconds")
    wanted = duration_seconds * fps
    step = frames - 1
    count = 1 if wanted <= frames else (1 + math.ceil((wanted - frames) / step) if step else math.ceil(wanted))
    if count > MAX_SEGMENTS:
        raise PlanError(
            f"{duration_seconds:g} s at {fps:g} fps needs {count} segments of {frames} frames; "
            f"at most {MAX_SEGMENTS} a scene: shorten the scene or use a longer segment template"
        )
    return SegmentPlan(count, frames, fps, film_seconds(segments=count, frames=frames, fps=fps), False)
