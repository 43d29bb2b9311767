"""Join correction and the simple learning on top of it.

- :func:`adjusted_params`: a failing join's retry gets a bounded, deterministic change of the
  engine's knobs, chosen by what failed: a motion jump (flow discontinuity over the gate) calms the
  motion knobs, a picture jump (SSIM under the gate) lowers how far the engine may stray from its
  first frame (denoise, augmentation, the weightless template's ``discontinuity``). One step per
  retry, each knob clamped to its range, so a retry never leaves what the engine accepts.
- :func:`suggested_params`: per engine (template) and project, the median of each knob over the
  last :data:`LEARN_FROM` passing attempts' feedback rows becomes the default of the next scene's
  segments. Only attempts whose join passed teach (a first segment, with no join, proves nothing);
  a knob no such attempt set is not suggested.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from generation.models import WorkflowTemplate
from generation.workflow.bindings import BindingError, resolve_bindings
from projects.models import Project
from quality.models import JoinEvaluation, QualityFeedback

LEARN_FROM = 20  # passing attempts a suggestion is the median of
MAX_STEPS = 4  # retries past this change nothing more (the chain bounds retries well before)


@dataclass(frozen=True)
class Knob:
    """One parameter a retry may change: multiplied by ``factor`` (or moved by ``step``), kept in [low, high]."""

    name: str
    on: frozenset[str]  # "flow" (motion jump) and/or "ssim" (picture jump): the failures it answers
    low: float
    high: float
    factor: float = 1.0
    step: float = 0.0
    integer: bool = False


FLOW, SSIM = "flow", "ssim"
KNOBS = (
    # the weightless segment template's jump at the first frame (0 = none) and its motion speed
    Knob("discontinuity", frozenset({FLOW, SSIM}), 0.0, 1.0, factor=0.5),
    Knob("motion", frozenset({FLOW}), 0.0, 64.0, factor=0.75),
    # SVD: motion bucket (1–255) and the noise added to its conditioning frame
    Knob("motion_bucket", frozenset({FLOW}), 1, 255, factor=0.75, integer=True),
    Knob("augmentation", frozenset({SSIM}), 0.0, 1.0, factor=0.5),
    # any sampler that repaints its start: less denoise keeps more of the first frame
    Knob("denoise", frozenset({SSIM}), 0.3, 1.0, step=-0.1),
    Knob("motion_strength", frozenset({FLOW}), 0.0, 2.0, factor=0.75),
)
KNOB_NAMES = frozenset(k.name for k in KNOBS)


def template_default(template: WorkflowTemplate | None, name: str) -> Any:
    """The value the template's graph gives a bound parameter (None when it does not bind it)."""
    if template is None or name not in (template.bindings or {}):
        return None
    try:
        targets = resolve_bindings(template.graph, template.bindings).get(name, [])
    except BindingError:
        return None
    for found in targets:
        if found.target.input is None:
            continue
        value = template.graph[found.node_id].get("inputs", {}).get(found.target.input)
        if value is not None:
            return value
    return None


def failures(join: JoinEvaluation | None) -> frozenset[str]:
    """What a join failed on: {"flow"}, {"ssim"}, both, or nothing (passed or not evaluated)."""
    if join is None or join.passed is not False:
        return frozenset()
    details = join.details or {}
    failed = set()
    if details.get("passed_flow") is False:
        failed.add(FLOW)
    if details.get("passed_ssim") is False:
        failed.add(SSIM)
    return frozenset(failed)


def adjusted_params(
    *, template: WorkflowTemplate | None, params: dict[str, Any], join: JoinEvaluation | None, attempt: int
) -> dict[str, Any]:
    """The overrides of the retry after ``attempt`` failed at ``join`` (a new dict; ``params`` is kept).

    Knobs are the template's bound parameters among :data:`KNOBS` (any of them when the template
    is not known) that answer the failure; a knob absent from ``params`` starts from the
    template's value. A passing or unevaluated join, or an attempt past :data:`MAX_STEPS`, changes nothing.
    """
    out = dict(params)
    failed = failures(join)
    if not failed or attempt > MAX_STEPS:
        return out
    bound = set((template.bindings or {}).keys()) if template is not None else None
    for knob in KNOBS:
        if not (knob.on & failed) or (bound is not None and knob.name not in bound):
            continue
        current = out.get(knob.name, template_default(template, knob.name))
        if not _number(current):
            continue
        value = min(knob.high, max(knob.low, float(current) * knob.factor + knob.step))
        out[knob.name] = round(value) if knob.integer else round(value, 4)
    return out


def suggested_params(*, project: Project, template: WorkflowTemplate | None) -> dict[str, Any]:
    """Defaults for the next scene's segments on ``template``: each knob's median over passing attempts."""
    if template is None:
        return {}
    rows = (
        # A passing join is the evidence: a scene's first segment (no join before it) proves nothing.
        QualityFeedback.objects.filter(project=project, template=template, passed=True, scores__has_key="join_ssim")
        .order_by("-created_at", "-pk")
        .values_list("params", flat=True)[:LEARN_FROM]
    )
    seen: dict[str, list[float]] = {}
    integer: dict[str, bool] = {}
    for params in rows:
        for name, value in (params or {}).items():
            if name in KNOB_NAMES and _number(value):
                seen.setdefault(name, []).append(float(value))
                integer[name] = integer.get(name, True) and isinstance(value, int)
    out: dict[str, Any] = {}
    for name, values in seen.items():
        median = statistics.median(values)
        out[name] = round(median) if integer[name] else round(median, 4)
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
