"""What ComfyUI writes into its PNGs (no Django): the API graph ("prompt") and the UI "workflow".

ComfyUI's SaveImage stores both as PNG text chunks. The positive prompt is the text of the
CLIPTextEncode that feeds a sampler's ``positive`` input (followed through conditioning nodes
such as ConditioningCombine or ControlNetApply), else the first CLIPTextEncode with literal text.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from PIL import Image

TEXT_ENCODERS = ("CLIPTextEncode", "CLIPTextEncodeSDXL", "CLIPTextEncodeFlux")
MAX_HOPS = 8


@dataclass(frozen=True)
class ComfyMetadata:
    graph: dict[str, Any] | None
    workflow: dict[str, Any] | None
    positive: str
    seed: int | None


def _json(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _nodes(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(k): v for k, v in graph.items() if isinstance(v, dict) and isinstance(v.get("inputs"), dict)}


def _text_of(node: dict[str, Any]) -> str | None:
    inputs = node["inputs"]
    for key in ("text", "text_g", "clip_l", "t5xxl"):
        if isinstance(inputs.get(key), str) and inputs[key].strip():
            return inputs[key].strip()
    return None


def _follow(nodes: dict[str, dict[str, Any]], link: Any) -> str | None:
    """The text at the end of a conditioning link, walking back through up to MAX_HOPS nodes."""
    for _ in range(MAX_HOPS):
        if not (isinstance(link, list) and link and str(link[0]) in nodes):
            return None
        node = nodes[str(link[0])]
        if node.get("class_type") in TEXT_ENCODERS:
            return _text_of(node)
        inputs = node["inputs"]
        link = next(
            (inputs[k] for k in ("conditioning", "conditioning_1", "positive", "conditioning_to") if k in inputs), None
        )
    return None


def positive_prompt(graph: dict[str, Any]) -> str:
    nodes = _nodes(graph)
    for node_id in sorted(nodes, key=lambda k: (len(k), k)):
        node = nodes[node_id]
        if "positive" in node["inputs"] and "Sampler" in str(node.get("class_type", "")):
            text = _follow(nodes, node["inputs"]["positive"])
            if text:
                return text
    for node_id in sorted(nodes, key=lambda k: (len(k), k)):
        node = nodes[node_id]
        if node.get("class_type") in TEXT_ENCODERS and (text := _text_of(node)):
            return text
    return ""


def graph_seed(graph: dict[str, Any]) -> int | None:
    for node in _nodes(graph).values():
        for key in ("seed", "noise_seed"):
            value = node["inputs"].get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def canonical_graph(graph: dict[str, Any]) -> str:
    """A comparable form: node ids, classes and inputs (ComfyUI may drop or add ``_meta`` titles)."""
    nodes = _nodes(graph)
    slim = {k: {"class_type": v.get("class_type"), "inputs": v["inputs"]} for k, v in nodes.items()}
    return json.dumps(slim, sort_keys=True, separators=(",", ":"))


def read_metadata(data: bytes) -> ComfyMetadata:
    """The graph, workflow and positive prompt embedded in a PNG (empty when there are none)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            info = dict(image.info)
    except (OSError, ValueError):
        info = {}
    graph = _json(info.get("prompt"))
    workflow = _json(info.get("workflow"))
    return ComfyMetadata(
        graph=graph,
        workflow=workflow,
        positive=positive_prompt(graph) if graph else "",
        seed=graph_seed(graph) if graph else None,
    )
