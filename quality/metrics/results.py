"""What every metric returns, and the errors bad input raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from quality.weights import fetch_command


class Status(StrEnum):
    """Same values as ``quality.models.ScoreStatus``: a result maps onto one QualityScore row."""

    OK = "ok"
    UNAVAILABLE = "unavailable"  # weights missing: ``fix`` says how to get them
    NO_SUBJECT = "no_subject"  # no face found: never a score of 0
    ERROR = "error"


@dataclass(frozen=True)
class MetricResult:
    metric: str
    status: Status
    value: float | None = None  # set exactly when status is OK
    model_id: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    fix: str = ""  # the command that makes an unavailable metric available

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @classmethod
    def scored(cls, metric: str, value: float, *, model_id: str = "", **details: Any) -> MetricResult:
        return cls(metric, Status.OK, float(value), model_id, details)

    @classmethod
    def unavailable(cls, metric: str, model_id: str, reason: str = "") -> MetricResult:
        fix = fetch_command(model_id)
        return cls(
            metric, Status.UNAVAILABLE, None, model_id, {"reason": reason or f"weights for {model_id} missing"}, fix
        )

    @classmethod
    def no_subject(cls, metric: str, *, model_id: str = "", **details: Any) -> MetricResult:
        return cls(metric, Status.NO_SUBJECT, None, model_id, {"reason": "no face found", **details})

    @classmethod
    def error(cls, metric: str, reason: str, *, model_id: str = "") -> MetricResult:
        return cls(metric, Status.ERROR, None, model_id, {"reason": reason})


class MetricInputError(ValueError):
    """The media cannot be scored; the message says why in words a producer understands."""


class UnreadableMedia(MetricInputError):
    pass


class EmptyMedia(MetricInputError):
    pass


class MediaTooLarge(MetricInputError):
    pass


class TooFewFrames(MetricInputError):
    pass


class WeightsMissing(Exception):
    """Raised by a loader; metric functions turn it into ``MetricResult.unavailable``."""

    def __init__(self, model_id: str, path: str) -> None:
        super().__init__(f"{model_id} weights not found at {path}; run: {fetch_command(model_id)}")
        self.model_id = model_id
        self.path = path
