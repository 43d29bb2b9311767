"""Turn a template graph plus parameters into the exact graph to submit.

Seeds. ComfyUI accepts seeds in 0..2**64-1, but Tower stores a job's seed in a signed 64-bit
column and sends it to browsers as JSON, where integers above 2**53 lose precision. So a seed
Tower draws is in 0..2**53-1 (:data:`MAX_DRAWN_SEED`: exact everywhere), and a seed a request
gives explicitly (to reproduce an image made elsewhere) may go up to 2**63-1 (:data:`MAX_SEED`).
"""

from __future__ import annotations

import pickle
import random
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from generation.workflow.bindings import (
    PARAMETERS,
    TRANSFORMS,
    Bindings,
    ResolvedTarget,
    is_structural,
    pose_count,
    resolve_bindings,
)
from generation.workflow.graph import Graph, WorkflowError, consumers, next_node_id

MAX_DRAWN_SEED = 2**53 - 1
MAX_SEED = 2**63 - 1


class ParameterError(WorkflowError):
    """A parameter value cannot be applied (wrong type, out of range, unknown name)."""


@dataclass(frozen=True)
class Applied:
    graph: Graph
    seed: int | None  # None when the template has no seed input
    applied: dict[str, Any] = field(default_factory=dict)  # parameter → value that reached the graph
    ignored: list[str] = field(default_factory=list)  # parameters given that the template does not bind
    inserted: list[str] = field(default_factory=list)  # ids of nodes added (LoRA chain, VAE loader)


def draw_seed(rng: random.Random | None = None) -> int:
    if rng is not None:
        return rng.randint(0, MAX_DRAWN_SEED)
    return secrets.randbelow(MAX_DRAWN_SEED + 1)


_RANGES: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, MAX_SEED),
    "steps": (1, None),
    "cfg": (0, None),
    "denoise": (0, 1),
    "width": (1, None),
    "height": (1, None),
    "batch_size": (1, None),
    "clip_skip": (1, None),
    "frames": (1, None),
    "fps": (0.01, None),
    "motion_strength": (0, None),
    "motion_bucket": (1, None),
    "augmentation": (0, None),
    "min_cfg": (0, None),
    "motion": (0, None),
    "discontinuity": (0, 1),
}


def coerce_parameter(name: str, value: Any) -> Any:
    """Check a parameter's type and basic range; return it in canonical form.

    Backend-specific limits (a sampler the server lacks, a width above its max) are for
    :func:`generation.workflow.preflight.preflight`, which knows the backend.
    """
    kind = PARAMETERS.get(name)
    if kind is None:
        raise ParameterError(f"unknown parameter '{name}'")
    if kind == "str":
        if not isinstance(value, str):
            raise ParameterError(f"{name} must be text, not {type(value).__name__}")
        return value
    if kind == "loras":
        return _coerce_loras(value)
    if kind == "poses":
        return _coerce_poses(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(f"{name} must be a number, not {type(value).__name__}")
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ParameterError(f"{name} must be a whole number, not {value}")
            value = int(value)
    else:
        value = float(value)
    low, high = _RANGES.get(name, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ParameterError(f"{name} must be {bounds}, not {value}")
    return value


def _coerce_loras(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ParameterError('loras must be a list of {"name": ..., "strength": ...}')
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ParameterError(f"loras item {i} must be an object with a name and a strength")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ParameterError(f"loras item {i} needs a non-empty 'name'")
        strengths: dict[str, float] = {}
        for key in ("strength", "strength_clip"):
            number = item.get(key, strengths.get("strength", 1.0))
            if isinstance(number, bool) or not isinstance(number, int | float):
                raise ParameterError(f"loras item {i} ({name}): {key} must be a number")
            strengths[key] = float(number)
        result.append({"name": name.strip(), **strengths})
    return result


MAX_POSES = 64
MAX_POSE_LENGTH = 1000


def _coerce_poses(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ParameterError('poses must be a non-empty list of texts, e.g. ["front view", "back view"]')
    if len(value) > MAX_POSES:
        raise ParameterError(f"poses may list at most {MAX_POSES} poses, not {len(value)}")
    result = []
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ParameterError(f"poses item {i} must be non-empty text")
        if len(item) > MAX_POSE_LENGTH:
            raise ParameterError(f"poses item {i} is longer than {MAX_POSE_LENGTH} characters")
        result.append(item.strip())
    return result


def pose_text(prompt: str | None, pose: str) -> str:
    """What a pose's panel is asked for: the prompt, then the pose."""
    return ", ".join(part.strip() for part in (prompt or "", pose) if part and part.strip())


def _copy(graph: Graph) -> Graph:
    """A deep copy of the template's graph. Pickle's C round trip copies the same plain data a
    sixth of the time ``copy.deepcopy`` takes (8 against 53 µs for the SDXL template), and a
    request applies its template once per job."""
    # S301: our own in-memory object, pickled and unpickled at once; never data from outside.
    copied: Graph = pickle.loads(pickle.dumps(graph, pickle.HIGHEST_PROTOCOL))  # noqa: S301
    return copied


def apply(
    graph: Graph,
    bindings: Bindings | dict[str, Any],
    params: Mapping[str, Any],
    *,
    rng: random.Random | None = None,
    resolved: dict[str, list[ResolvedTarget]] | None = None,
) -> Applied:
    """Return a new graph with every bound parameter set; ``graph`` itself is never modified.

    A parameter whose value is ``None`` keeps the template's own value. A seed binding with no
    seed given draws one; the seed used is returned so the caller can record it. ``resolved`` is
    ``resolve_bindings(graph, bindings)`` when the caller applies one template many times.
    """
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ParameterError(f"unknown parameters: {', '.join(unknown)}")
    if resolved is None:
        resolved = resolve_bindings(graph, bindings)
    values = {name: coerce_parameter(name, v) for name, v in params.items() if v is not None}
    seed: int | None = None
    if "seed" in resolved:
        seed = values.get("seed")
        if seed is None:
            seed = draw_seed(rng)
        values["seed"] = seed
    # Pose targets take the prompt with their pose: it is used even with no target of its own.
    posed = "poses" in resolved and values.get("poses") is not None
    if posed:
        _check_pose_count(resolved, values["poses"])
    out = _copy(graph)
    applied: dict[str, Any] = {}
    # An empty LoRA list asks for nothing, so a template without LoRA support does not ignore it.
    ignored = sorted(
        name for name, v in values.items() if name not in resolved and v != [] and not (posed and name == "prompt")
    )
    inserted: list[str] = []
    for name, value in values.items():
        for res in resolved.get(name, []):
            if is_structural(name, res.target):
                continue
            if name == "poses":
                assert res.target.pose is not None  # normalize_bindings requires it
                value_here: Any = pose_text(values.get("prompt"), value[res.target.pose])
            else:
                value_here = value
            final = TRANSFORMS[res.target.transform](value_here) if res.target.transform else value_here
            out[res.node_id]["inputs"][res.target.input] = final
        if name in resolved or (posed and name == "prompt"):
            applied[name] = value
    # Structural changes last: they add nodes and rewire links but never touch bound values.
    for res in resolved.get("vae", []):
        if is_structural("vae", res.target) and values.get("vae"):
            inserted.append(insert_vae(out, res, values["vae"]))
    for res in resolved.get("loras", []):
        inserted.extend(insert_lora_chain(out, res, values.get("loras", [])))
    return Applied(graph=out, seed=seed, applied=applied, ignored=ignored, inserted=inserted)


def _check_pose_count(resolved: dict[str, list[ResolvedTarget]], poses: list[str]) -> None:
    drawn = pose_count({"poses": [r.target for r in resolved["poses"]]})
    if len(poses) != drawn:
        raise ParameterError(
            f"this template draws {drawn} poses (one panel each), so poses must list {drawn}, not {len(poses)}"
        )


def graph_values(graph: Graph, resolved: dict[str, list[ResolvedTarget]]) -> dict[str, Any]:
    """The value ``graph`` itself holds for each bound parameter (its first target's input).

    Structural and transformed targets are left out: their input holds no parameter value as such.
    """
    values: dict[str, Any] = {}
    for name, targets in resolved.items():
        first = targets[0]
        if (
            is_structural(name, first.target)
            or first.target.transform
            or first.target.input is None
            or first.target.pose is not None
        ):
            continue
        value = graph[first.node_id].get("inputs", {}).get(first.target.input)
        if value is not None:
            values[name] = value
    return values


def insert_lora_chain(graph: Graph, at: ResolvedTarget, loras: list[dict[str, Any]]) -> list[str]:
    """Insert one LoRA loader per item after the loader ``at``, in order; mutate ``graph``.

    Every input that read the loader's model (and CLIP) output reads the end of the chain
    instead; the first LoRA reads the loader itself. A loader with no CLIP output
    (``clip_output: null``) gets model-only LoRA loaders.
    """
    if not loras:
        return []
    source, target = at.node_id, at.target
    model_users = consumers(graph, source, target.model_output)
    clip_users = consumers(graph, source, target.clip_output) if target.clip_output is not None else []
    model_link: list[Any] = [source, target.model_output]
    clip_link: list[Any] | None = [source, target.clip_output] if target.clip_output is not None else None
    created = []
    for position, lora in enumerate(loras, start=1):
        node_id = next_node_id(graph)
        if clip_link is None:
            node = {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {
                    "model": model_link,
                    "lora_name": lora["name"],
                    "strength_model": lora["strength"],
                },
            }
        else:
            node = {
                "class_type": "LoraLoader",
                "inputs": {
                    "model": model_link,
                    "clip": clip_link,
                    "lora_name": lora["name"],
                    "strength_model": lora["strength"],
                    "strength_clip": lora["strength_clip"],
                },
            }
            clip_link = [node_id, 1]
        node["_meta"] = {"title": f"LoRA {position}: {lora['name']}"}
        graph[node_id] = node
        model_link = [node_id, 0]
        created.append(node_id)
    for node_id, name in model_users:
        graph[node_id]["inputs"][name] = list(model_link)
    for node_id, name in clip_users:
        graph[node_id]["inputs"][name] = list(clip_link) if clip_link else None
    return created


def insert_vae(graph: Graph, at: ResolvedTarget, vae: str) -> str:
    """Add a VAELoader for ``vae`` and make every reader of the loader's VAE output use it."""
    users = consumers(graph, at.node_id, at.target.vae_output)
    node_id = next_node_id(graph)
    graph[node_id] = {
        "class_type": "VAELoader",
        "inputs": {"vae_name": vae},
        "_meta": {"title": f"VAE: {vae}"},
    }
    for user, name in users:
        graph[user]["inputs"][name] = [node_id, 0]
    return node_id
