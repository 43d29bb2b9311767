"""What every quality service shares: the models directory and the domain error."""

from __future__ import annotations

from django.conf import settings

from quality.metrics import MetricModels
from tower.core.errors import DomainError


class QualityError(DomainError):
    """A quality operation cannot be done as asked (the message is for the person who asked)."""


def metric_models() -> MetricModels:
    """The scoring models of this installation (``TOWER_MODELS_DIR``); tests point it elsewhere."""
    return MetricModels(root=settings.MODELS_DIR)
