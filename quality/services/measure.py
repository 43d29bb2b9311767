"""Running the metrics on a set of outputs at once: the bridge between rows and ``quality.metrics``.

Stills and sampled frames of every clip go through the aesthetic and similarity networks in one
batch each; clips get the temporal metrics. Results keep the metric's own status: nothing here
invents a value. Videos: aesthetic is the mean over up to :data:`SAMPLE_FRAMES` evenly spaced
frames (as VBench averages frames); similarity is the mean over the sampled frames in which a face
was found, and "no face found" when there is none in any of them.

Character sheets (a :class:`Media` with ``sheet`` = (columns, rows)): each panel goes through the
similarity network in the same batch, and the sheet gets ``face_quality``
(``quality.metrics.sheet``). Clips get ``overall``, the weighted composite of their metrics
(``quality.metrics.composite``). A character's outputs get ``palette_distance`` when the character
has a palette; a palette-gated character without one gets that reason instead of a number.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from characters.models import Character, CharacterVersion
from characters.selectors import similarity_threshold
from quality.metrics import (
    MetricInputError,
    MetricModels,
    MetricResult,
    Status,
    aesthetic_scores,
    character_similarity,
    composite,
    load_frames,
    palette_distance,
    sharpness,
    temporal_metrics,
)
from quality.metrics import sheet as sheets
from quality.services.references import EmbeddedReferences, character_embed_references

SAMPLE_FRAMES = 8


@dataclass
class Media:
    """One output to score: its frames, or why it could not be read."""

    key: Hashable
    frames: list[np.ndarray] | None = None
    error: str = ""
    sheet: tuple[int, int] | None = None  # a character sheet's (columns, rows)

    @property
    def animated(self) -> bool:
        return self.frames is not None and len(self.frames) > 1


def read_media(key: Hashable, data: bytes | None, *, max_frames: int | None = None) -> Media:
    """Decode ``data``; unreadable, empty or oversized media become a :class:`Media` with ``error``."""
    if not data:
        return Media(key, error="empty file")
    try:
        frames = load_frames(data) if max_frames is None else load_frames(data, max_frames=max_frames)
    except MetricInputError as exc:
        return Media(key, error=str(exc))
    return Media(key, frames=frames)


def sample(frames: Sequence[np.ndarray], n: int = SAMPLE_FRAMES) -> list[np.ndarray]:
    if len(frames) <= n:
        return list(frames)
    return [frames[int(i)] for i in np.linspace(0, len(frames) - 1, n).round()]


def _combine(metric: str, results: Sequence[MetricResult]) -> MetricResult:
    """Per-frame results of one clip as one result: the mean of the scored frames."""
    scored = [r for r in results if r.ok]
    if scored:
        best = max(scored, key=lambda r: r.value or 0.0)
        details = {
            "per_frame": [None if r.value is None else round(r.value, 6) for r in results],
            "frames_scored": len(scored),
            "frames_sampled": len(results),
        }
        if "reference" in best.details:
            details["best_frame_reference"] = best.details["reference"]
        return MetricResult.scored(metric, float(np.mean([r.value for r in scored])), model_id=best.model_id, **details)
    for status in (Status.UNAVAILABLE, Status.ERROR, Status.NO_SUBJECT):
        found = next((r for r in results if r.status is status), None)
        if found is not None:
            details = {**found.details, "frames_sampled": len(results)}
            if status is Status.NO_SUBJECT:
                details["reason"] = "no face found in any sampled frame"
            return MetricResult(metric, status, None, found.model_id, details, found.fix)
    return MetricResult.error(metric, "nothing to score")


def measure(
    media: Sequence[Media],
    *,
    models: MetricModels,
    character: Character | None,
    loop: bool = False,
    version: CharacterVersion | None = None,
    references: Callable[[Character, CharacterVersion | None], EmbeddedReferences] | None = None,
) -> dict[Hashable, list[MetricResult]]:
    """Every applicable metric of every readable item, by item key (unreadable items: one error).

    ``references`` gives the embedded references of the character (the version's own when it has
    some; default: embed them now); a batch of jobs passes one that embeds each set once.
    """
    out: dict[Hashable, list[MetricResult]] = {m.key: [] for m in media}
    readable = [m for m in media if m.frames]
    for m in media:
        if not m.frames:
            out[m.key].append(MetricResult.error("media", m.error or "no frames"))
    if not readable:
        return out

    # One batch of images for the networks: each still, and a sample of each clip's frames.
    spans: dict[Hashable, slice] = {}
    images: list[np.ndarray] = []
    for m in readable:
        frames = m.frames or []  # readable: never empty
        chosen = sample(frames) if m.animated else frames
        spans[m.key] = slice(len(images), len(images) + len(chosen))
        images.extend(chosen)
    # A sheet's panels join the similarity batch after the images (aesthetic does not see them).
    panels: dict[Hashable, slice | MetricResult] = {}
    panel_images: list[np.ndarray] = []
    if character is not None:
        for m in readable:
            if m.sheet is not None and not m.animated:
                try:
                    cut = sheets.split_panels(m.frames[0], *m.sheet)  # type: ignore[index]  # readable media have frames
                except MetricInputError as exc:
                    panels[m.key] = MetricResult.error(sheets.METRIC, str(exc))
                    continue
                start = len(images) + len(panel_images)
                panels[m.key] = slice(start, start + len(cut))
                panel_images.extend(cut)

    aesthetic = aesthetic_scores(images, models=models)
    similarity: list[MetricResult] | None = None
    threshold = similarity_threshold(character) if character is not None else None
    if character is not None:
        if references is None:
            embedded = character_embed_references(character=character, models=models, version=version)
        else:
            embedded = references(character, version)
        problem = embedded.unusable()
        if problem is not None:
            similarity = [problem] * (len(images) + len(panel_images))
        else:
            similarity = character_similarity(
                images + panel_images,
                embedded.references,
                art_kind=character.project.art_kind,  # type: ignore[arg-type]  # a choices column holding ArtKind's values
                models=models,
                threshold=threshold,  # type: ignore[arg-type]  # set whenever there is a character
            )

    for m in readable:
        span = spans[m.key]
        results = out[m.key]
        if m.animated:
            results.append(_combine("aesthetic", aesthetic[span]))
            if similarity is not None:
                results.append(_combine("character_similarity", similarity[span]))
            try:
                results.extend(temporal_metrics(m.frames, models=models, loop=loop).values())  # type: ignore[arg-type]  # readable media have frames
            except MetricInputError as exc:
                results.append(MetricResult.error("temporal", str(exc)))
            by_metric = {r.metric: r for r in results}
            results.append(
                composite.overall(by_metric, character=character is not None, similarity_threshold=threshold)
            )
        else:
            results.append(aesthetic[span][0])
            if similarity is not None:
                results.append(similarity[span][0])
            results.append(MetricResult.scored("sharpness", sharpness(m.frames[0])))  # type: ignore[index]  # readable media have frames
            panel_span = panels.get(m.key)
            if isinstance(panel_span, MetricResult):
                results.append(panel_span)
            elif panel_span is not None and similarity is not None:
                results.append(
                    sheets.face_quality(similarity[panel_span], threshold=threshold)  # type: ignore[arg-type]  # set with a character
                )
        if character is not None:
            results.extend(_palette(m, character))
    return out


def _palette(media: Media, character: Character) -> list[MetricResult]:
    """ΔE from the character's palette on the middle frame; for a palette-gated character without a
    palette, the reason instead (it cannot pass a gate it cannot be measured against)."""
    if not character.palette:
        if character.palette_gated:
            return [
                MetricResult.error(
                    "palette_distance", "the character has no palette; extract it from its references first"
                )
            ]
        return []
    frames = media.frames or []
    try:
        return [palette_distance(frames[len(frames) // 2], character.palette)]
    except MetricInputError as exc:
        return [MetricResult.error("palette_distance", str(exc))]
