"""Whether any backend whose nodes Tower knows could run a graph, checked before a job is queued."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from generation.models import BackendObjectInfo
from generation.services.reads import backend_object_info
from generation.workflow import Problem, preflight


def known_object_infos() -> list[tuple[str, dict[str, Any]]]:
    """(backend name, parsed /object_info) of enabled backends whose nodes are known."""
    rows = BackendObjectInfo.objects.filter(backend__enabled=True).values_list("backend_id", "backend__name")
    return [(name, info) for backend_id, name in rows if (info := backend_object_info(backend_id))]


@dataclass(frozen=True)
class Refusal:
    """Why every backend whose nodes we know would refuse a graph."""

    message: str
    node: str  # "#4 ImageAddNoise": the node the first backend's first problem names, as the engine labels nodes
    problems: list[dict[str, Any]]


def graph_refusal(graph: dict[str, Any], infos: list[tuple[str, dict[str, Any]]]) -> Refusal | None:
    """A refusal when every backend we know the nodes of would refuse the graph, else None."""
    if not infos:
        return None
    reports = []
    first: list[Problem] = []
    for name, info in infos:
        problems = preflight(graph, info)
        if not problems:
            return None
        first = first or problems
        reports.append(f"{name}: " + "; ".join(p.message for p in problems[:5]))
    node_id = first[0].node_id
    node = f"#{node_id} {first[0].class_type}".strip() if node_id else ""
    return Refusal(
        message=" | ".join(reports), node=node, problems=[{**p.__dict__, "value": repr(p.value)} for p in first[:50]]
    )
