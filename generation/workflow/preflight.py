"""Check a graph against a backend's ``/object_info`` before submitting it.

The checks mirror what ComfyUI's ``validate_inputs`` does when a prompt is posted (recorded in
``prompt_invalid.json``): the node class exists, required inputs are present, links point at an
output that exists and has a compatible type, numbers convert and lie within min/max, and combo
values are among the options. Catching these here gives the producer a sentence that names the
missing checkpoint and what the backend does have, before a job is queued.

Two shapes of combo inputs appear in ``/object_info``: the classic ``[["a", "b"], {...}]`` and
the newer ``["COMBO", {"options": ["a", "b"], ...}]``. Both are read; a ``COMBO`` with no
``options`` (a list the frontend fetches from another route) is not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from generation.workflow.graph import Graph, is_link, node_sort_key

MAX_LISTED = 10

# Inputs naming a model file: a value missing from their list means the file is not installed.
_FILE_NOUNS = {
    "ckpt_name": "checkpoint",
    "lora_name": "LoRA",
    "vae_name": "VAE",
    "clip_name": "CLIP model",
    "clip_name1": "CLIP model",
    "clip_name2": "CLIP model",
    "unet_name": "diffusion model",
    "control_net_name": "ControlNet",
    "model_name": "model",
    "model": "model",  # LoadFramePackModel: a file in models/diffusion_models
    "style_model_name": "style model",
    "image": "image",
    "video": "video",
}
_SETTING_NOUNS = {"sampler_name": "sampler", "scheduler": "scheduler"}

# Class-name prefixes of custom node packs Tower's shipped templates use.
_FRAMEPACK = "ComfyUI-FramePackWrapper (github.com/kijai/ComfyUI-FramePackWrapper)"
_PACKS = (
    ("IPAdapter", "ComfyUI_IPAdapter_plus (github.com/cubiq/ComfyUI_IPAdapter_plus)"),
    ("ADE_", "ComfyUI-AnimateDiff-Evolved (github.com/Kosinkadink/ComfyUI-AnimateDiff-Evolved)"),
    ("VHS_", "ComfyUI-VideoHelperSuite (github.com/Kosinkadink/ComfyUI-VideoHelperSuite)"),
    ("FramePack", _FRAMEPACK),
    ("LoadFramePackModel", _FRAMEPACK),
    ("DownloadAndLoadFramePackModel", _FRAMEPACK),
)


def node_pack(class_type: str) -> str | None:
    """The custom node pack a node class comes from, when Tower knows it."""
    return next((pack for start, pack in _PACKS if class_type.startswith(start)), None)


@dataclass(frozen=True)
class Problem:
    node_id: str
    class_type: str
    input: str | None
    value: Any
    message: str
    code: str = ""  # unknown_class, missing_input, bad_link, type_mismatch, invalid_type,
    # below_min, above_max, not_in_list, no_outputs


class ComboRequirement(NamedTuple):
    node_id: str
    class_type: str
    input: str
    value: Any


@dataclass(frozen=True)
class InputSpec:
    name: str
    category: str  # "required" | "optional"
    type: str  # INT, FLOAT, STRING, BOOLEAN, COMBO, or a socket type such as MODEL
    options: list[Any] | None  # combo choices; None when the backend does not list them
    config: dict[str, Any]


def input_specs(class_info: dict[str, Any]) -> dict[str, InputSpec]:
    """The required and optional inputs of one ``/object_info`` entry, in either combo shape."""
    specs: dict[str, InputSpec] = {}
    inputs = class_info.get("input") or {}
    for category in ("required", "optional"):
        for name, raw in (inputs.get(category) or {}).items():
            if not isinstance(raw, list | tuple) or not raw:
                continue
            head = raw[0]
            config = raw[1] if len(raw) > 1 and isinstance(raw[1], dict) else {}
            if isinstance(head, list):
                specs[name] = InputSpec(name, category, "COMBO", list(head), config)
            elif head == "COMBO":
                options = config.get("options")
                specs[name] = InputSpec(
                    name, category, "COMBO", list(options) if isinstance(options, list) else None, config
                )
            elif isinstance(head, str):
                specs[name] = InputSpec(name, category, head, None, config)
    return specs


def combo_requirements(graph: Graph, object_info: dict[str, Any]) -> list[ComboRequirement]:
    """Literal values the graph gives to combo inputs (checkpoints, LoRAs, samplers…)."""
    found = []
    for node_id in sorted(graph, key=node_sort_key):
        node = graph[node_id]
        class_type = node.get("class_type", "")
        info = object_info.get(class_type)
        if not isinstance(info, dict):
            continue
        specs = input_specs(info)
        for name, value in node.get("inputs", {}).items():
            spec = specs.get(name)
            if spec is not None and spec.type == "COMBO" and not is_link(value):
                found.append(ComboRequirement(node_id, class_type, name, value))
    return found


def _listing(options: list[Any]) -> str:
    shown = ", ".join(str(o) for o in options[:MAX_LISTED])
    more = len(options) - MAX_LISTED
    return shown + (f", … ({more} more)" if more > 0 else "")


def _near_match(value: Any, options: list[Any]) -> Any:
    """An option that differs from ``value`` only by path separators, case or folder."""
    if not isinstance(value, str):
        return None

    def norm(text: str) -> str:
        return text.replace("\\", "/").lower()

    wanted = norm(value)
    for option in options:
        if isinstance(option, str) and norm(option) == wanted:
            return option
    base = wanted.rsplit("/", 1)[-1]
    same_file = [o for o in options if isinstance(o, str) and norm(o).rsplit("/", 1)[-1] == base]
    return same_file[0] if len(same_file) == 1 else None


def _combo_message(prefix: str, name: str, value: Any, options: list[Any]) -> str:
    noun = _FILE_NOUNS.get(name)
    if noun is not None:
        text = f"{prefix}: {noun} '{value}' is not on this backend; "
        text += f"it has: {_listing(options)}" if options else f"it has no {noun} files"
    else:
        label = _SETTING_NOUNS.get(name, f"'{name}' value")
        text = f"{prefix}: {label} '{value}' is not offered by this backend; it has: {_listing(options)}"
    near = _near_match(value, options)
    if near is not None:
        text += f" (did you mean '{near}'?)"
    return text


def node_pack_hint(class_type: str) -> str:
    """Where a node class that a server lacks comes from, and what to do about it."""
    pack = node_pack(class_type)
    if pack is not None:
        return (
            f"it comes from the custom node pack {pack}: install it on the server "
            "(e.g. with ComfyUI-Manager) and restart ComfyUI"
        )
    return "a custom node pack is missing, or the server runs an older ComfyUI"


def _missing_class_message(prefix: str, class_type: str) -> str:
    hint = node_pack_hint(class_type)
    if hint.startswith("it comes"):
        return f"{prefix}: this backend has no node class '{class_type}'; {hint}"
    return f"{prefix}: this backend has no node class '{class_type}' ({hint})"


def _types_compatible(received: str, expected: str) -> bool:
    if received == expected or "*" in (received, expected):
        return True
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return bool(got & want)


def preflight(graph: Graph, object_info: dict[str, Any], *, check_uploads: bool = False) -> list[Problem]:
    """Everything that would make the backend refuse ``graph``, as a list (empty when clean).

    Inputs whose files Tower uploads right before submitting (``image_upload`` combos such as
    LoadImage's ``image``) are only checked with ``check_uploads=True``.
    """
    problems: list[Problem] = []
    has_output = False
    for node_id in sorted(graph, key=node_sort_key):
        node = graph[node_id]
        class_type = str(node.get("class_type"))
        prefix = f"node {node_id} ({class_type})"
        info = object_info.get(class_type)
        if not isinstance(info, dict):
            message = _missing_class_message(prefix, class_type)
            problems.append(Problem(node_id, class_type, None, None, message, "unknown_class"))
            continue
        has_output = has_output or bool(info.get("output_node"))
        inputs = node.get("inputs", {})
        for name, spec in input_specs(info).items():
            if name not in inputs:
                if spec.category == "required":
                    problems.append(
                        Problem(
                            node_id,
                            class_type,
                            name,
                            None,
                            f"{prefix}: required input '{name}' is missing",
                            "missing_input",
                        )
                    )
                continue
            value = inputs[name]
            if is_link(value):
                problem = _check_link(graph, object_info, node_id, prefix, spec, value)
            else:
                problem = _check_value(prefix, node_id, class_type, spec, value, check_uploads)
            if problem is not None:
                problems.append(problem)
    if graph and not has_output and not any(p.code == "unknown_class" for p in problems):
        problems.append(
            Problem(
                "",
                "",
                None,
                None,
                "the workflow has no output node (SaveImage, PreviewImage, SaveAnimatedWEBP…), "
                "so ComfyUI would run nothing",
                "no_outputs",
            )
        )
    return problems


def _check_link(
    graph: Graph,
    object_info: dict[str, Any],
    node_id: str,
    prefix: str,
    spec: InputSpec,
    link: list[Any],
) -> Problem | None:
    class_type = str(graph[node_id].get("class_type"))
    source_id, index = link[0], int(link[1])
    source = graph.get(source_id)
    if source is None:
        return Problem(
            node_id,
            class_type,
            spec.name,
            link,
            f"{prefix}: input '{spec.name}' links to node {source_id}, which is not in the workflow",
            "bad_link",
        )
    source_info = object_info.get(str(source.get("class_type")))
    if not isinstance(source_info, dict):
        return None  # reported on the source node itself
    outputs = source_info.get("output") or []
    source_desc = f"node {source_id} ({source.get('class_type')})"
    if index >= len(outputs):
        return Problem(
            node_id,
            class_type,
            spec.name,
            link,
            f"{prefix}: input '{spec.name}' reads output {index} of {source_desc}, which has {len(outputs)} output(s)",
            "bad_link",
        )
    received = outputs[index]
    if spec.type != "COMBO" and isinstance(received, str) and not _types_compatible(received, spec.type):
        return Problem(
            node_id,
            class_type,
            spec.name,
            link,
            f"{prefix}: input '{spec.name}' takes {spec.type} but {source_desc} gives {received}",
            "type_mismatch",
        )
    return None


def _check_value(
    prefix: str,
    node_id: str,
    class_type: str,
    spec: InputSpec,
    value: Any,
    check_uploads: bool,
) -> Problem | None:
    name = spec.name
    if spec.type in ("INT", "FLOAT"):
        try:
            number = int(value) if spec.type == "INT" else float(value)
        except (TypeError, ValueError):
            return Problem(
                node_id,
                class_type,
                name,
                value,
                f"{prefix}: input '{name}' must be {'a whole number' if spec.type == 'INT' else 'a number'}, "
                f"not {value!r}",
                "invalid_type",
            )
        low, high = spec.config.get("min"), spec.config.get("max")
        if isinstance(low, int | float) and number < low:
            return Problem(
                node_id,
                class_type,
                name,
                value,
                f"{prefix}: input '{name}' is {value}, below this backend's minimum of {low}",
                "below_min",
            )
        if isinstance(high, int | float) and number > high:
            return Problem(
                node_id,
                class_type,
                name,
                value,
                f"{prefix}: input '{name}' is {value}, above this backend's maximum of {high}",
                "above_max",
            )
        return None
    if spec.type == "COMBO" and spec.options is not None:
        if not check_uploads and any(
            spec.config.get(flag) for flag in ("image_upload", "video_upload", "audio_upload")
        ):
            return None
        if value not in spec.options:
            return Problem(
                node_id,
                class_type,
                name,
                value,
                _combo_message(prefix, name, value, spec.options),
                "not_in_list",
            )
    return None
