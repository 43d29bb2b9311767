"""Fixtures of the scoring, gate and quality API tests (see ``scoring_helpers``)."""

from __future__ import annotations

import pytest

from quality.services import pending
from tests.quality.evaluate_helpers import evaluation_worker
from tests.quality.scoring_helpers import broker, engine, fake, models, models_without


@pytest.fixture(autouse=True)
def no_gathering(monkeypatch):
    """Runs score at once here; how long a run waits for more jobs is a cost, not a behaviour."""
    monkeypatch.setattr(pending, "GATHER_SECONDS", 0.0)


__all__ = ["broker", "engine", "evaluation_worker", "fake", "models", "models_without"]
