"""ComfyUI API-format graphs: recognising, validating and walking them.

An API-format graph is ``{node_id: {"class_type": str, "inputs": {name: value | link}, "_meta": {...}}}``.
A link is ``[source_node_id, output_index]``, exactly as ComfyUI's own ``is_link`` reads it: a
two-item list whose first item is a string and whose second is a number. ComfyUI treats *every*
list input as a link attempt, so a list of any other shape is an error here as well.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

from tower.core.errors import DomainError

Graph = dict[str, dict[str, Any]]
Link = list[Any]  # [node_id: str, output_index: int]

UI_FORMAT_HELP = (
    "This is a ComfyUI UI workflow (the file with 'nodes' and 'links' that the Save menu writes), "
    "not the API format Tower needs. In ComfyUI open Settings, turn on 'Enable dev mode options' "
    "(Comfy › Dev mode), then choose Workflow › Export (API) in the menu ('Save (API Format)' on "
    "older versions) and import that file."
)

_MAX_PROBLEMS_IN_MESSAGE = 8


class WorkflowError(DomainError):
    """Base class of every error this package raises."""


class GraphFormatError(WorkflowError):
    """The data is not a usable ComfyUI API-format graph. ``problems`` lists every reason found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = problems[:_MAX_PROBLEMS_IN_MESSAGE]
        more = len(problems) - len(shown)
        text = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        super().__init__(text)


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
        # NaN, Infinity and 1e400 are floats too, but no output index (int() raises on them).
        and math.isfinite(value[1])
    )


def looks_like_ui_format(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def parse_graph(raw: str | bytes | dict[str, Any]) -> Graph:
    """Decode (when given text) and validate a graph; return it unchanged when it is valid.

    A ``/prompt`` request body (``{"prompt": {...}, "client_id": ...}``) is unwrapped, since its
    ``prompt`` value is an API-format graph and nothing else can be meant.
    """
    data: Any = raw
    if isinstance(raw, str | bytes):
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise GraphFormatError([f"not valid JSON ({exc})"]) from exc
        except RecursionError:
            # json recurses once per level: text nested ~1,000 deep is no graph, and not a 500.
            raise GraphFormatError(["not a workflow: the JSON is nested far too deeply"]) from None
    if (
        isinstance(data, dict)
        and isinstance(data.get("prompt"), dict)
        and "class_type" not in data["prompt"]
        and all(k in {"prompt", "client_id", "extra_data", "prompt_id", "number", "front"} for k in data)
    ):
        data = data["prompt"]
    validate_graph(data)
    graph: Graph = data
    return graph


def validate_graph(data: Any) -> None:
    """Raise :class:`GraphFormatError` naming every way ``data`` is not an API-format graph."""
    if looks_like_ui_format(data):
        raise GraphFormatError([UI_FORMAT_HELP])
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise GraphFormatError([f"a workflow must be a JSON object of nodes keyed by id, not a {kind}"])
    if not data:
        raise GraphFormatError(["the workflow has no nodes"])
    problems: list[str] = []
    for node_id, node in data.items():
        if not isinstance(node, dict):
            problems.append(f"node {node_id}: must be an object with class_type and inputs")
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type.strip():
            problems.append(f"node {node_id}: has no class_type")
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            problems.append(f"node {node_id}: 'inputs' must be an object")
            continue
        meta = node.get("_meta")
        if meta is not None and not isinstance(meta, dict):
            problems.append(f"node {node_id}: '_meta' must be an object")
        for name, value in inputs.items():
            if not isinstance(value, list):
                continue
            if not is_link(value):
                problems.append(f"node {node_id}: input '{name}' is a list but not a link [node_id, output_index]")
            elif value[0] not in data:
                problems.append(
                    f"node {node_id}: input '{name}' links to node {value[0]}, which is not in the workflow"
                )
            elif value[1] < 0 or value[1] != int(value[1]):
                problems.append(f"node {node_id}: input '{name}' has a bad output index {value[1]}")
    if not problems:
        cycle = find_cycle(data)
        if cycle:
            problems.append("the workflow has a cycle: " + " → ".join(cycle))
    if problems:
        raise GraphFormatError(problems)


def iter_links(graph: Graph) -> Iterator[tuple[str, str, str, int]]:
    """Yield ``(target_node, input_name, source_node, output_index)`` for every link."""
    for node_id, node in graph.items():
        for name, value in node.get("inputs", {}).items():
            if is_link(value):
                yield node_id, name, value[0], int(value[1])


def consumers(graph: Graph, source: str, output: int) -> list[tuple[str, str]]:
    """``(node_id, input_name)`` pairs fed by ``source``'s output ``output``, in a stable order."""
    return sorted(
        ((t, name) for t, name, s, idx in iter_links(graph) if s == source and idx == output),
        key=lambda pair: (node_sort_key(pair[0]), pair[1]),
    )


def upstream(graph: Graph, node_id: str, input_name: str) -> str | None:
    value = graph.get(node_id, {}).get("inputs", {}).get(input_name)
    return value[0] if is_link(value) else None


def find_cycle(graph: Graph) -> list[str]:
    """A cycle as a list of node ids (first id repeated at the end), or ``[]``."""
    deps: dict[str, list[str]] = {n: [] for n in graph}
    for target, _name, source, _idx in iter_links(graph):
        if source in deps:
            deps[target].append(source)
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for start in sorted(graph, key=node_sort_key):
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(deps[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                stack.append((child, iter(deps[child])))
                path.append(child)
    return []


def node_sort_key(node_id: str) -> tuple[int, int, str]:
    """Numeric ids in numeric order, then any others alphabetically."""
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def next_node_id(graph: Graph) -> str:
    numeric = [int(n) for n in graph if n.isdigit()]
    return str(max(numeric, default=0) + 1)


def node_title(node: dict[str, Any]) -> str | None:
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else None


def required_nodes(graph: Graph) -> list[str]:
    """The node classes the graph needs on the backend, sorted."""
    return sorted({str(node.get("class_type")) for node in graph.values()})
