"""Overall progress and ETA of one prompt from its node events (Django-free)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProgressTracker:
    graph: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    cached: set[str] = field(default_factory=set)
    done: list[str] = field(default_factory=list)
    node_seconds: dict[str, float] = field(default_factory=dict)
    current: str | None = None
    current_since: float = 0.0
    step: float = 0.0
    steps: float = 0.0

    @property
    def total(self) -> int:
        return max(1, len(self.graph) - len(self.cached))

    def on_cached(self, nodes: list[str]) -> None:
        self.cached.update(n for n in nodes if n in self.graph)

    def on_node(self, node: str | None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self.current is not None and self.current not in self.done:
            self.done.append(self.current)
            self.node_seconds[self.current] = round(now - self.current_since, 4)
        self.current, self.current_since, self.step, self.steps = node, now, 0.0, 0.0

    def on_progress(self, value: float, maximum: float) -> None:
        self.step, self.steps = value, maximum

    @property
    def fraction(self) -> float:
        inside = self.step / self.steps if self.steps > 0 else 0.0
        return max(0.0, min(0.999, (len(self.done) + inside) / self.total))

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Remaining time by extrapolation from the elapsed time; None until there is signal."""
        now = time.monotonic() if now is None else now
        fraction = self.fraction
        if fraction < 0.05:
            return None
        elapsed = now - self.started
        return round(max(0.0, elapsed / fraction - elapsed), 1)

    def node_label(self, node: str | None) -> str:
        if node is None:
            return ""
        info = self.graph.get(node) or {}
        title = (info.get("_meta") or {}).get("title") or info.get("class_type") or "?"
        return f"{title} (#{node})"
