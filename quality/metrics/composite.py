"""The overall quality of a clip (the phase-3 gate's metric): a weighted composite. Django-free.

    overall = Σ wᵢ · nᵢ / Σ wᵢ      over the components that apply

Components, their weights and how each is normalised to 0–1 (clipped):

==========================  ======  ==============================================================
``subject_consistency``      0.30   as measured (0–1)
``motion_smoothness``        0.25   as measured (0–1)
``temporal_flicker``         0.15   as measured (0–1; 1 = no flicker)
``aesthetic``                0.20   (score − 1) / 9 (the LAION predictor's 1–10 scale)
``character_similarity``     0.10   similarity / the character's threshold, at most 1 (reaching
                                    the threshold is full marks: raw cosines differ by model)
==========================  ======  ==============================================================

``character_similarity`` applies only to a character's clip; without it the other weights are
renormalised (they sum to 0.90). A character clip in which no face was found scores 0 on it.

Never a silent pass: a component that applies but did not run (weights missing, an error) makes
the composite not evaluable: an ``unavailable`` (or ``error``) result whose ``reason`` names the
component and whose ``fix`` is the command that fetches its weights.
"""

from __future__ import annotations

from collections.abc import Mapping

from quality.metrics.results import MetricResult, Status

METRIC = "overall"
WEIGHTS: dict[str, float] = {
    "subject_consistency": 0.30,
    "motion_smoothness": 0.25,
    "temporal_flicker": 0.15,
    "aesthetic": 0.20,
    "character_similarity": 0.10,
}


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, float(x)))


def normalise(metric: str, value: float, *, similarity_threshold: float | None = None) -> float:
    """A component's value on 0–1 (see the module docstring)."""
    if metric == "aesthetic":
        return _clip01((value - 1.0) / 9.0)
    if metric == "character_similarity":
        return _clip01(value / similarity_threshold) if similarity_threshold else _clip01(value)
    return _clip01(value)


def overall(
    results: Mapping[str, MetricResult], *, character: bool, similarity_threshold: float | None = None
) -> MetricResult:
    """The composite of one clip's metric results (by metric name); ``character``: the clip is a
    character's, so its similarity is a component."""
    wanted = [m for m in WEIGHTS if m != "character_similarity" or character]
    components: dict[str, dict[str, float | None]] = {}
    normalised: dict[str, float] = {}
    for metric in wanted:
        result = results.get(metric)
        if result is None:
            return MetricResult.error(METRIC, f"{metric} was not measured, so the overall quality cannot be computed")
        if result.ok and result.value is not None:
            normal = normalise(metric, result.value, similarity_threshold=similarity_threshold)
        elif result.status is Status.NO_SUBJECT and metric == "character_similarity":
            normal = 0.0  # the character is not in the clip: a measured defect, not a missing model
        else:
            reason = result.details.get("reason") or result.status.value
            return MetricResult(
                METRIC,
                Status.UNAVAILABLE if result.status is Status.UNAVAILABLE else Status.ERROR,
                None,
                result.model_id,
                {"reason": f"{metric} did not run ({reason}), so the overall quality cannot be computed"},
                result.fix,
            )
        normalised[metric] = round(normal, 6)
        components[metric] = {"value": result.value, "normalised": normalised[metric], "weight": WEIGHTS[metric]}
    total = sum(WEIGHTS[m] for m in wanted)
    value = sum(WEIGHTS[m] * normalised[m] for m in wanted) / total
    return MetricResult.scored(METRIC, value, components=components)
