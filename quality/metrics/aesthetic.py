"""LAION improved aesthetic predictor: an MLP on the L2-normalised CLIP ViT-L/14 image embedding.

Scores run about 1–10 (LAION cut its aesthetic subsets at > 7 and > 8); Tower's default gate is 5.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from quality import weights
from quality.metrics.frames import FrameLike, as_rgb
from quality.metrics.results import MetricResult, WeightsMissing
from quality.metrics.runtime import MetricModels, load_aesthetic_head, load_clip

# Images a ViT-L/14 pass takes on the CPU: 8 cost a fifth less CPU per image than 4 (a clip's
# 8 sampled frames are one pass) and hold under 100 MB of activations.
CPU_BATCH = 8

try:
    import torch
    from torch import nn

    class AestheticHead(nn.Module):
        """The predictor's layout: keys ``layers.{0,2,4,6,7}.*`` as in ``sac+logos+ava1-l14-linearMSE.pth``."""

        def __init__(self, dim: int = 768) -> None:
            super().__init__()
            self.layers = nn.Sequential(
                nn.Linear(dim, 1024),
                nn.Dropout(0.2),
                nn.Linear(1024, 128),
                nn.Dropout(0.2),
                nn.Linear(128, 64),
                nn.Dropout(0.1),
                nn.Linear(64, 16),
                nn.Linear(16, 1),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.layers(x)
            return out

except ImportError:  # pragma: no cover - torch is a dependency; keeps the module importable without it
    pass


def clip_embeddings(images: Sequence[FrameLike], models: MetricModels, *, batch: int | None = None) -> np.ndarray:
    """L2-normalised CLIP image embeddings (N×D). Raises :class:`WeightsMissing`."""
    model, preprocess = load_clip(models)
    device = models.torch_device
    batch = batch or (32 if device.type == "cuda" else CPU_BATCH)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            chunk = [preprocess(Image.fromarray(as_rgb(im))) for im in images[start : start + batch]]
            features = model.encode_image(torch.stack(chunk).to(device))
            out.append(torch.nn.functional.normalize(features.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def aesthetic_scores(
    images: Sequence[FrameLike], *, models: MetricModels, batch: int | None = None
) -> list[MetricResult]:
    """One ``aesthetic`` result per image (for a video, pass its frames: VBench averages them)."""
    if not images:
        return []
    rgb = [as_rgb(im) for im in images]
    try:
        embeddings = clip_embeddings(rgb, models, batch=batch)
        head = load_aesthetic_head(models, embeddings.shape[1])
    except WeightsMissing as exc:
        return [MetricResult.unavailable("aesthetic", exc.model_id, str(exc)) for _ in rgb]
    with torch.inference_mode():
        values = head(torch.from_numpy(embeddings).to(models.torch_device)).float().cpu().numpy().ravel()
    model_id = f"{weights.AESTHETIC_HEAD[0]}+{weights.CLIP_CHECKPOINT[0]}"
    return [MetricResult.scored("aesthetic", float(v), model_id=model_id) for v in values]
