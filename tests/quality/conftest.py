"""Fixtures of the scoring, gate and quality API tests (see ``scoring_helpers``)."""

from __future__ import annotations

from tests.quality.evaluate_helpers import evaluation_worker
from tests.quality.scoring_helpers import broker, engine, fake, models, models_without

__all__ = ["broker", "engine", "evaluation_worker", "fake", "models", "models_without"]
