"""Choosing a ComfyUI backend for a job (Django-free).

Rules, in order:
1. capability: the backend is enabled, healthy, and has every node class the graph needs;
2. room: fewer prompts in flight than its ``max_in_flight`` (the next prompt is already queued on
   the server when one finishes, so the GPU never waits for Tower), and used VRAM not above its
   hold threshold;
3. checkpoint affinity: prefer a backend that last ran the same checkpoint (a reload costs
   seconds to minutes), then the one with the fewest prompts in flight, then the one that has
   gone longest without work (so a second checkpoint lands on an idle GPU, not on top of the
   first, as SwarmUI's "model pressure" does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from generation.workflow.preflight import node_pack


@dataclass(frozen=True)
class BackendState:
    id: int
    name: str
    enabled: bool
    healthy: bool
    in_flight: int
    max_in_flight: int
    vram_used_fraction: float | None
    vram_hold: float
    node_classes: frozenset[str] = field(default_factory=frozenset)
    last_checkpoint: str = ""
    last_used: float = 0.0
    url: str = ""


@dataclass(frozen=True)
class Choice:
    backend_id: int | None
    reason: str


def missing_nodes(state: BackendState, required: Iterable[str]) -> list[str]:
    if not state.node_classes:
        # Unknown capabilities (object_info not fetched yet): pre-flight will decide.
        return []
    return sorted(set(required) - state.node_classes)


def _with_pack(class_type: str) -> str:
    pack = node_pack(class_type)
    return f"{class_type} (node pack {pack.split(' (')[0]})" if pack else class_type


def choose_backend(states: Sequence[BackendState], *, required_nodes: Iterable[str], checkpoint: str = "") -> Choice:
    required = list(required_nodes)
    capable = [s for s in states if s.enabled and s.healthy and not missing_nodes(s, required)]
    if not capable:
        if not any(s.enabled for s in states):
            return Choice(None, "no enabled ComfyUI backend")
        if not any(s.enabled and s.healthy for s in states):
            return Choice(None, "no ComfyUI backend is reachable")
        gaps = {s.name: missing_nodes(s, required) for s in states if s.enabled and s.healthy}
        detail = "; ".join(f"{name} lacks {', '.join(_with_pack(n) for n in nodes)}" for name, nodes in gaps.items())
        return Choice(None, f"no backend has the nodes this workflow needs ({detail})")
    with_room = [s for s in capable if s.in_flight < s.max_in_flight]
    if not with_room:
        # The job waits for a slot, not for a backend: say which (pages show "waiting for a free slot on …").
        return Choice(None, f"no free slot on {', '.join(s.name for s in capable)}")
    cool = [s for s in with_room if s.vram_used_fraction is None or s.vram_used_fraction <= s.vram_hold]
    if not cool:
        return Choice(None, "held: VRAM use is above the threshold on every free backend")

    def rank(s: BackendState) -> tuple[int, int, float]:
        affinity = 0 if checkpoint and s.last_checkpoint == checkpoint else 1
        return (affinity, s.in_flight, s.last_used)

    best = min(cool, key=rank)
    why = "same checkpoint loaded" if checkpoint and best.last_checkpoint == checkpoint else "least busy"
    return Choice(best.id, why)
