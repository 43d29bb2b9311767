"""Tower's quality metrics: Django-free functions on frames, each model loaded once per process.

Pass ``MetricModels(root=settings.MODELS_DIR)``; every metric returns :class:`MetricResult` whose
``status`` is one of ``quality.models.ScoreStatus``'s values. Missing weights give "unavailable"
with ``fix`` = ``python manage.py fetch_models <id>``; bad media raise :class:`MetricInputError`.

- :func:`temporal_metrics` (loops, videos): temporal LPIPS, subject consistency, motion smoothness,
  flicker, SSIM, flow magnitude, loop seamlessness, join SSIM / flow discontinuity.
- :func:`aesthetic_scores`: the LAION improved aesthetic predictor, 1–10.
- :func:`character_similarity` / :func:`embed_reference`: faces against reference embeddings.
- :func:`ssim`, :func:`sharpness`, :func:`palette_distance`: weight-free.
"""

from __future__ import annotations

from quality.metrics.aesthetic import aesthetic_scores, clip_embeddings
from quality.metrics.frames import load_frames
from quality.metrics.pixel import palette_distance, sharpness, ssim
from quality.metrics.results import (
    EmptyMedia,
    MediaTooLarge,
    MetricInputError,
    MetricResult,
    Status,
    TooFewFrames,
    UnreadableMedia,
    WeightsMissing,
)
from quality.metrics.runtime import MetricModels, clear_cache
from quality.metrics.similarity import (
    FaceEmbedding,
    Reference,
    character_similarity,
    embed_faces,
    embed_reference,
    embedding_model_id,
)
from quality.metrics.temporal import TEMPORAL_METRICS, temporal_metrics

__all__ = [
    "TEMPORAL_METRICS",
    "EmptyMedia",
    "FaceEmbedding",
    "MediaTooLarge",
    "MetricInputError",
    "MetricModels",
    "MetricResult",
    "Reference",
    "Status",
    "TooFewFrames",
    "UnreadableMedia",
    "WeightsMissing",
    "aesthetic_scores",
    "character_similarity",
    "clear_cache",
    "clip_embeddings",
    "embed_faces",
    "embed_reference",
    "embedding_model_id",
    "load_frames",
    "palette_distance",
    "sharpness",
    "ssim",
    "temporal_metrics",
]
