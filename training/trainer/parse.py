"""Reading kohya sd-scripts' console output: pure functions, no Django.

kohya prints a header (``num train images * repeats / 学習画像の数×繰り返し回数: 200``,
``num epochs / epoch数: 10``, ``total optimization steps / 学習ステップ数: 500``), an
``epoch 1/10`` line per epoch, and a tqdm bar redrawn with ``\\r``::

    steps:  40%|████      | 4/10 [00:01<00:01,  3.20it/s, avr_loss=0.0912]

Slow runs show ``s/it`` instead of ``it/s``; older versions print ``loss=`` instead of ``avr_loss=``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

LOSS_HISTORY_LIMIT = 500

_TQDM = re.compile(r"\|\s*(?P<step>\d+)/(?P<total>\d+)\s*\[(?P<inside>[^\]]*)")
_RATE = re.compile(r"(?P<rate>\d+(?:\.\d+)?)\s*(?P<unit>it/s|s/it)")
_LOSS = re.compile(r"\b(?:avr_loss|loss)=(?P<loss>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)")
_EPOCH = re.compile(r"^\s*epoch\s+(?P<epoch>\d+)\s*/\s*(?P<total>\d+)\s*$", re.IGNORECASE)
_TOTAL_STEPS = re.compile(r"total optimization steps[^:：]*[:：]\s*(?P<n>\d+)", re.IGNORECASE)
_TOTAL_EPOCHS = re.compile(r"num epochs[^:：]*[:：]\s*(?P<n>\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class LineUpdate:
    """What one line of output says; None = the line says nothing about it."""

    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    it_per_second: float | None = None
    epoch: int | None = None
    total_epochs: int | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in self.__dict__.values())


def split_output(buffer: str) -> tuple[list[str], str]:
    """Complete lines of ``buffer`` (split on ``\\n`` and tqdm's ``\\r``) and the unfinished rest."""
    parts = re.split(r"\r\n|\r|\n", buffer)
    rest = parts.pop()
    return [p for p in parts if p.strip()], rest


def parse_line(line: str) -> LineUpdate:
    values: dict[str, float | int] = {}
    if m := _EPOCH.match(line):
        values["epoch"], values["total_epochs"] = int(m["epoch"]), int(m["total"])
    elif m := _TOTAL_STEPS.search(line):
        values["total_steps"] = int(m["n"])
    elif m := _TOTAL_EPOCHS.search(line):
        values["total_epochs"] = int(m["n"])
    # Only the training bar: kohya also shows bars for caching latents ("caching latents: 3/20").
    elif line.lstrip().lower().startswith("steps") and (m := _TQDM.search(line)):
        values["step"], values["total_steps"] = int(m["step"]), int(m["total"])
        if rm := _RATE.search(m["inside"]):
            rate = float(rm["rate"])
            if rm["unit"] == "s/it":
                rate = 1.0 / rate if rate > 0 else 0.0
            if rate > 0:
                values["it_per_second"] = rate
        if lm := _LOSS.search(line):
            loss = float(lm["loss"])
            if math.isfinite(loss):
                values["loss"] = loss
    return LineUpdate(**values)  # type: ignore[arg-type]  # each key parsed above with its field's type


def append_loss(history: list[list[float]], step: int, loss: float, *, limit: int = LOSS_HISTORY_LIMIT) -> None:
    """Add ``[step, loss]`` (one point per step); past ``limit`` points, keep every other older point."""
    if history and history[-1][0] == step:
        history[-1] = [step, loss]
        return
    history.append([step, loss])
    if len(history) > limit:
        # Halve the resolution of everything but the newest point; the chart keeps its shape.
        history[:] = history[:-1][::2] + history[-1:]


@dataclass
class Progress:
    """Accumulated state of one run, fed line by line."""

    step: int = 0
    total_steps: int | None = None
    epoch: int = 0
    total_epochs: int | None = None
    loss: float | None = None
    it_per_second: float | None = None
    loss_history: list[list[float]] = field(default_factory=list)

    def apply(self, update: LineUpdate) -> bool:
        """Fold one line in; True when anything shown to the user changed."""
        if update.is_empty():
            return False
        if update.total_steps is not None:
            self.total_steps = update.total_steps
        if update.total_epochs is not None:
            self.total_epochs = update.total_epochs
        if update.epoch is not None:
            self.epoch = update.epoch
        if update.step is not None:
            self.step = update.step
        if update.it_per_second is not None:
            self.it_per_second = update.it_per_second
        if update.loss is not None:
            self.loss = update.loss
            append_loss(self.loss_history, self.step, update.loss)
        return True

    @property
    def eta_seconds(self) -> float | None:
        if not self.it_per_second or self.total_steps is None:
            return None
        return round(max(0, self.total_steps - self.step) / self.it_per_second, 1)
