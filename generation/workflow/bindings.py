"""Bindings: which node input receives each Tower parameter.

A template's bindings map a parameter name to one target or a list of targets::

    {"seed":   [{"node": "3", "class": "KSampler", "input": "seed"}],
     "prompt": {"title": "Positive", "input": "text"},
     "loras":  {"class": "CheckpointLoaderSimple"}}

A target names its node by ``node`` (id), ``title`` (``_meta.title``) or ``class`` (class_type);
when several are given they are tried in that order, so a binding keeps working after the user
re-exports a graph whose ids changed (the practice of comfy-api-simplified and SwarmUI). A class
that matches several nodes is an error naming them: bind by id or title instead.

A target may carry a ``transform`` (see :data:`TRANSFORMS`), which maps the parameter's value to
what the input takes: ``clip_skip`` 2 becomes ``stop_at_clip_layer`` -2 with ``negate``; the
weightless templates turn the prompt and seed into a colour so that a new seed gives a new graph.

A target may say ``"style": true``: the parameter then follows the project's
:class:`~projects.models.GenerationStyle` (its size, sampler, checkpoint…). A parameter whose
targets do not say so keeps the graph's own value unless the request overrides it, so an
imported graph runs as its author wrote it; :func:`style_parameters` lists the ones that follow.

``poses`` (a list of texts, the project's ``sheet_poses``) draws a sheet's panels: each of its
targets carries a ``pose`` index and receives the prompt joined with that pose's text
(``"<prompt>, <pose>"``), then its transform if any; so a template that binds ``poses`` takes the
prompt through them (``prompt`` follows the style with them). A pose index the list does not
have, or a list longer than the template draws, is a :class:`~generation.workflow.graph.WorkflowError`
naming the template's pose count.

``loras`` (always) and ``vae`` (when the target has no ``input``) are structural: their target is
the loader whose outputs feed the rest of the graph, and :func:`generation.workflow.apply.apply`
inserts nodes after it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from generation.workflow.graph import Graph, WorkflowError, is_link, node_sort_key, node_title

# name → value kind. Kinds: "str", "int", "float", "loras", "poses" (a list of texts).
PARAMETERS: dict[str, str] = {
    "prompt": "str",
    "negative": "str",
    "seed": "int",
    "steps": "int",
    "cfg": "float",
    "sampler": "str",
    "scheduler": "str",
    "denoise": "float",
    "width": "int",
    "height": "int",
    "batch_size": "int",
    "checkpoint": "str",
    "vae": "str",
    "loras": "loras",
    "clip_skip": "int",
    "init_image": "str",
    "reference_image": "str",
    "reference_strength": "float",
    "frames": "int",
    "fps": "float",
    "filename_prefix": "str",
    "motion_strength": "float",
    "motion_bucket": "int",
    "augmentation": "float",
    "min_cfg": "float",
    # A segment template's motion speed (pixels a frame) and its jump at the first frame (0 = none, 1 = a cut).
    "motion": "float",
    "discontinuity": "float",
    "poses": "poses",
}
STRUCTURAL = frozenset({"loras", "vae"})
# Parameters a project's generation style gives a value to: only these may say "style": true.
STYLE_PARAMETERS = frozenset(
    {
        "prompt",
        "negative",
        "checkpoint",
        "vae",
        "sampler",
        "scheduler",
        "steps",
        "cfg",
        "denoise",
        "width",
        "height",
        "clip_skip",
        "loras",
        "fps",
        "poses",
    }
)


def _stable_int(text: str, bits: int) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> (64 - bits)


TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "negate": lambda v: -v,
    "int": lambda v: round(v),
    # A 24-bit RGB colour (what EmptyImage.color takes) derived from text or a seed; stable
    # across processes, unlike hash().
    "color_from_text": lambda v: _stable_int(str(v), 24),
    "color_from_seed": lambda v: _stable_int(f"seed:{v}", 24),
    # A number in [0, 1] for blend factors and strengths.
    "unit_from_seed": lambda v: round(_stable_int(f"unit:{v}", 20) / (2**20 - 1), 3),
    # A number in [0.5, 1]: a seeded strength that never fades an effect out entirely.
    "depth_from_seed": lambda v: round(0.5 + _stable_int(f"depth:{v}", 20) / (2**20 - 1) / 2, 3),
    # FramePackSampler's total_second_length that makes at least ``frames`` frames: it renders 30 fps in
    # sections of 36 frames (latent window 9) after the first, round(seconds * 30 / 36) sections.
    "framepack_seconds": lambda v: max(1.0, round(math.ceil(max(v - 1, 1) / 36) * 1.2, 1)),
}

_TARGET_KEYS = frozenset(
    {"node", "title", "class", "input", "transform", "style", "pose", "model_output", "clip_output", "vae_output"}
)


class BindingError(WorkflowError):
    """Bindings that are malformed or do not resolve on a graph; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Target:
    node: str | None = None
    title: str | None = None
    class_type: str | None = None
    input: str | None = None
    transform: str | None = None
    style: bool = False  # the parameter follows the project's style (see the module docstring)
    pose: int | None = None  # a ``poses`` target: which pose of the list it draws
    # Structural targets: which outputs of the loader carry the model, the CLIP and the VAE.
    model_output: int = 0
    clip_output: int | None = 1
    vae_output: int = 2

    def describe(self) -> str:
        parts = []
        if self.node is not None:
            parts.append(f"node {self.node}")
        if self.title is not None:
            parts.append(f"title '{self.title}'")
        if self.class_type is not None:
            parts.append(f"class {self.class_type}")
        return " or ".join(parts)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.node is not None:
            data["node"] = self.node
        if self.title is not None:
            data["title"] = self.title
        if self.class_type is not None:
            data["class"] = self.class_type
        if self.input is not None:
            data["input"] = self.input
        if self.transform is not None:
            data["transform"] = self.transform
        if self.style:
            data["style"] = True
        if self.pose is not None:
            data["pose"] = self.pose
        if self.model_output != 0:
            data["model_output"] = self.model_output
        if self.clip_output != 1:
            data["clip_output"] = self.clip_output
        if self.vae_output != 2:
            data["vae_output"] = self.vae_output
        return data


Bindings = dict[str, list[Target]]


@dataclass(frozen=True)
class ResolvedTarget:
    """A target found on a graph."""

    node_id: str
    target: Target


def is_structural(param: str, target: Target) -> bool:
    return param == "loras" or (param == "vae" and target.input is None)


def _parse_target(param: str, raw: Any, problems: list[str]) -> Target | None:
    where = f"binding '{param}'"
    if not isinstance(raw, dict):
        problems.append(f'{where}: each target must be an object like {{"node": "3", "input": "seed"}}')
        return None
    unknown = set(raw) - _TARGET_KEYS
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    ok = True
    strings: dict[str, str | None] = {}
    for key in ("node", "title", "class", "input", "transform"):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and key == "node":
            value = str(value)  # a hand-written {"node": 3} means node "3"
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{where}: '{key}' must be a non-empty string")
            ok = False
        strings[key] = value
    if not any(strings[k] for k in ("node", "title", "class")):
        problems.append(f"{where}: a target needs 'node', 'title' or 'class'")
        ok = False
    transform = strings["transform"]
    if transform is not None and transform not in TRANSFORMS:
        problems.append(f"{where}: unknown transform '{transform}' (known: {', '.join(sorted(TRANSFORMS))})")
        ok = False
    style = raw.get("style", False)
    if not isinstance(style, bool):
        problems.append(f"{where}: 'style' must be true or false")
        ok = False
    elif style and param not in STYLE_PARAMETERS:
        problems.append(
            f"{where}: '{param}' has no value in the project's style, so it cannot follow it "
            f"(these can: {', '.join(sorted(STYLE_PARAMETERS))})"
        )
        ok = False
    pose = raw.get("pose")
    if param == "poses":
        if isinstance(pose, bool) or not isinstance(pose, int) or pose < 0:
            problems.append(f"{where}: each target needs a 'pose' index (0 for the first pose, 1, …)")
            ok = False
    elif pose is not None:
        problems.append(f"{where}: only 'poses' targets take a 'pose' index")
        ok = False
    outputs: dict[str, int | None] = {}
    for key, default in (("model_output", 0), ("clip_output", 1), ("vae_output", 2)):
        value = raw.get(key, default)
        if value is None and key == "clip_output":
            outputs[key] = None
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{where}: '{key}' must be an output index (0, 1, …)")
            ok = False
        else:
            outputs[key] = value
    if not ok:
        return None
    target = Target(
        node=strings["node"],
        title=strings["title"],
        class_type=strings["class"],
        input=strings["input"],
        transform=transform,
        style=style is True,
        pose=pose if param == "poses" else None,
        model_output=outputs["model_output"] or 0,
        clip_output=outputs["clip_output"],
        vae_output=outputs["vae_output"] if outputs["vae_output"] is not None else 2,
    )
    if param == "loras" and target.input is not None:
        problems.append(f"{where}: LoRAs bind to the loader node whose model and CLIP they patch; drop 'input'")
        return None
    if not is_structural(param, target) and target.input is None:
        problems.append(f"{where}: target {target.describe()} needs an 'input'")
        return None
    return target


def normalize_bindings(raw: Any) -> Bindings:
    """Check the shape of stored bindings and return them as :class:`Target` lists."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BindingError(["bindings must be an object mapping parameter names to targets"])
    problems: list[str] = []
    result: Bindings = {}
    for param, value in raw.items():
        if param not in PARAMETERS:
            problems.append(f"unknown parameter '{param}' (known: {', '.join(sorted(PARAMETERS))})")
            continue
        items = value if isinstance(value, list) else [value]
        if not items:
            problems.append(f"binding '{param}': has no targets")
            continue
        targets = [t for t in (_parse_target(param, item, problems) for item in items) if t]
        if len(targets) == len(items):
            result[param] = targets
    if problems:
        raise BindingError(problems)
    return result


def style_parameters(bindings: Bindings | dict[str, Any]) -> frozenset[str]:
    """The parameters that follow the project's style: those with a target saying ``"style": true``.

    Pose targets write the prompt too, so ``poses`` following the style brings ``prompt`` with it."""
    names = {param for param, targets in _ensure_normalized(bindings).items() if any(t.style for t in targets)}
    if "poses" in names:
        names.add("prompt")
    return frozenset(names)


def pose_count(bindings: Bindings | dict[str, Any]) -> int:
    """How many poses a template draws (its highest pose index + 1; 0 without a ``poses`` binding)."""
    targets = _ensure_normalized(bindings).get("poses", [])
    return max((t.pose for t in targets if t.pose is not None), default=-1) + 1


def bindings_to_json(bindings: Bindings) -> dict[str, list[dict[str, Any]]]:
    return {param: [t.to_json() for t in targets] for param, targets in bindings.items()}


def _candidates(graph: Graph, ids: list[str]) -> str:
    described = []
    for node_id in sorted(ids, key=node_sort_key):
        title = node_title(graph[node_id])
        described.append(f"{node_id} '{title}'" if title else node_id)
    return ", ".join(described)


def find_node(graph: Graph, target: Target) -> str:
    """The id of the node ``target`` names: by id, then title, then class. Raises ``LookupError``."""
    if (
        target.node is not None
        and target.node in graph
        and (target.class_type is None or graph[target.node].get("class_type") == target.class_type)
    ):
        return target.node
    if target.title is not None:
        titled = [
            n
            for n, node in graph.items()
            if node_title(node) == target.title
            and (target.class_type is None or node.get("class_type") == target.class_type)
        ]
        if len(titled) == 1:
            return titled[0]
        if len(titled) > 1:
            raise LookupError(
                f"{len(titled)} nodes are titled '{target.title}' ({_candidates(graph, titled)}); "
                "give them distinct titles or bind by node id"
            )
    if target.class_type is not None:
        of_class = [n for n, node in graph.items() if node.get("class_type") == target.class_type]
        if len(of_class) == 1:
            return of_class[0]
        if len(of_class) > 1:
            raise LookupError(
                f"{len(of_class)} nodes are of class {target.class_type} "
                f"({_candidates(graph, of_class)}); bind by node id or title instead"
            )
    raise LookupError(f"no node matches {target.describe()}")


def resolve_bindings(graph: Graph, bindings: Bindings | dict[str, Any]) -> dict[str, list[ResolvedTarget]]:
    """Find every target's node on ``graph``; raise :class:`BindingError` listing all failures.

    A plain target's input must already be on the node as a value (not a link): that catches
    misspelt input names, and binding over a link would silently cut the graph.
    """
    normalized = _ensure_normalized(bindings)
    problems: list[str] = []
    resolved: dict[str, list[ResolvedTarget]] = {}
    for param, targets in normalized.items():
        found: list[ResolvedTarget] = []
        for target in targets:
            try:
                node_id = find_node(graph, target)
            except LookupError as exc:
                problems.append(f"binding '{param}': {exc}")
                continue
            node = graph[node_id]
            class_type = node.get("class_type")
            if target.input is not None and not is_structural(param, target):
                inputs = node.get("inputs", {})
                if target.input not in inputs:
                    known = ", ".join(sorted(k for k, v in inputs.items() if not is_link(v)))
                    problems.append(
                        f"binding '{param}': node {node_id} ({class_type}) has no input "
                        f"'{target.input}' (its values: {known or 'none'})"
                    )
                    continue
                if is_link(inputs[target.input]):
                    source = inputs[target.input][0]
                    problems.append(
                        f"binding '{param}': input '{target.input}' of node {node_id} ({class_type}) "
                        f"is linked from node {source}; bind that node's value instead"
                    )
                    continue
            found.append(ResolvedTarget(node_id, target))
        if found and len(found) == len(targets):
            resolved[param] = found
    if problems:
        raise BindingError(problems)
    return resolved


def _ensure_normalized(bindings: Bindings | dict[str, Any]) -> Bindings:
    if all(isinstance(v, list) and all(isinstance(t, Target) for t in v) for v in bindings.values()):
        return bindings
    return normalize_bindings(bindings)
