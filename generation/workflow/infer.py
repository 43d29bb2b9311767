"""Propose bindings for a graph a user exported from ComfyUI.

The rules follow how hand-built ComfyUI graphs are usually wired. Every proposal binds by node id
(and records the class, so a wrong id is caught); the user can edit the result. Nothing is
guessed when a choice is ambiguous: such a parameter is simply left unbound.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from generation.workflow.graph import Graph, consumers, is_link, iter_links, node_sort_key, node_title, upstream

SAMPLERS = {
    "KSampler": {
        "seed": "seed",
        "steps": "steps",
        "cfg": "cfg",
        "sampler": "sampler_name",
        "scheduler": "scheduler",
        "denoise": "denoise",
    },
    "KSamplerAdvanced": {
        "seed": "noise_seed",
        "steps": "steps",
        "cfg": "cfg",
        "sampler": "sampler_name",
        "scheduler": "scheduler",
    },
}
TEXT_ENCODERS = {"CLIPTextEncode": ("text",), "CLIPTextEncodeSDXL": ("text_g", "text_l")}
LATENTS = {"EmptyLatentImage", "EmptySD3LatentImage"}
CHECKPOINT_LOADERS = {"CheckpointLoaderSimple": True, "ImageOnlyCheckpointLoader": False}
SAVERS = {"SaveImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM", "SaveVideo", "VHS_VideoCombine"}
FPS_INPUTS = {
    "SaveAnimatedWEBP": "fps",
    "SaveAnimatedPNG": "fps",
    "SaveWEBM": "fps",
    "CreateVideo": "fps",
    "VHS_VideoCombine": "frame_rate",
}
REFERENCE_USERS = ("IPAdapter",)
# Inputs that hold the seed on a node titled "seed" (a sampler, a noise node, a PrimitiveInt).
SEED_INPUTS = ("seed", "noise_seed", "value")


def _target(graph: Graph, node_id: str, input_name: str | None = None, **extra: Any) -> dict[str, Any]:
    target: dict[str, Any] = {"node": node_id, "class": graph[node_id]["class_type"]}
    if input_name is not None:
        target["input"] = input_name
    target.update(extra)
    return target


def _has_value(graph: Graph, node_id: str, input_name: str) -> bool:
    inputs = graph[node_id].get("inputs", {})
    return input_name in inputs and not is_link(inputs[input_name])


def _has_int(graph: Graph, node_id: str, input_name: str) -> bool:
    value = graph[node_id].get("inputs", {}).get(input_name)
    return isinstance(value, int) and not isinstance(value, bool)


def _of_class(graph: Graph, classes: set[str] | dict[str, Any]) -> list[str]:
    return sorted((n for n, node in graph.items() if node.get("class_type") in classes), key=node_sort_key)


def _find_upstream(graph: Graph, start: str | None, classes: set[str] | dict[str, Any]) -> str | None:
    """The nearest node of one of ``classes`` reached by walking links backwards from ``start``."""
    if start is None:
        return None
    seen, queue = {start}, deque([start])
    while queue:
        node_id = queue.popleft()
        if graph[node_id].get("class_type") in classes:
            return node_id
        for value in graph[node_id].get("inputs", {}).values():
            if is_link(value) and value[0] in graph and value[0] not in seen:
                seen.add(value[0])
                queue.append(value[0])
    return None


def _feeds(graph: Graph, node_id: str, prefixes: tuple[str, ...]) -> bool:
    """Whether any node downstream of ``node_id`` has a class starting with one of ``prefixes``."""
    readers: dict[str, list[str]] = {}
    for target, _name, source, _index in iter_links(graph):
        readers.setdefault(source, []).append(target)
    seen, queue = {node_id}, deque([node_id])
    while queue:
        for target in readers.get(queue.popleft(), []):
            if graph[target].get("class_type", "").startswith(prefixes):
                return True
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return False


def _primary_sampler(graph: Graph) -> str | None:
    samplers = _of_class(graph, SAMPLERS)
    # The first pass: its latent does not come (even indirectly) from another sampler.
    first_pass = [s for s in samplers if _find_upstream(graph, upstream(graph, s, "latent_image"), SAMPLERS) is None]
    candidates = first_pass or samplers
    return candidates[0] if candidates else None


def infer_bindings(graph: Graph) -> dict[str, list[dict[str, Any]]]:
    """Bindings in their stored JSON form, for the parameters this graph clearly exposes."""
    bindings: dict[str, list[dict[str, Any]]] = {}

    def bind(param: str, node_id: str, input_name: str | None = None, **extra: Any) -> None:
        if input_name is not None and not _has_value(graph, node_id, input_name):
            return
        target = _target(graph, node_id, input_name, **extra)
        if target not in bindings.setdefault(param, []):
            bindings[param].append(target)

    sampler = _primary_sampler(graph)
    for other in _of_class(graph, SAMPLERS):
        bind("seed", other, SAMPLERS[graph[other]["class_type"]]["seed"])
    if sampler is not None:
        for param, input_name in SAMPLERS[graph[sampler]["class_type"]].items():
            if param != "seed":
                bind(param, sampler, input_name)
        for param, side in (("prompt", "positive"), ("negative", "negative")):
            encoder = _find_upstream(graph, upstream(graph, sampler, side), TEXT_ENCODERS)
            if encoder is not None:
                for input_name in TEXT_ENCODERS[graph[encoder]["class_type"]]:
                    bind(param, encoder, input_name)
        latent = _find_upstream(graph, upstream(graph, sampler, "latent_image"), LATENTS)
    else:
        latent = None
    latents = _of_class(graph, LATENTS)
    if latent is None and len(latents) == 1:
        latent = latents[0]
    if latent is not None:
        bind("width", latent, "width")
        bind("height", latent, "height")
        bind("batch_size", latent, "batch_size")
    elif sampler is not None:
        # img2img: the size is wherever the init image is scaled before VAEEncode.
        scaler = _find_upstream(graph, upstream(graph, sampler, "latent_image"), {"ImageScale"})
        if scaler is not None:
            bind("width", scaler, "width")
            bind("height", scaler, "height")
    if sampler is None:
        # Image-only graphs (no sampler): seeded noise nodes and a single canvas.
        for node_id in _of_class(graph, {"ImageAddNoise"}):
            bind("seed", node_id, "seed")
        canvases = _of_class(graph, {"EmptyImage"})
        if len(canvases) == 1:
            bind("width", canvases[0], "width")
            bind("height", canvases[0], "height")

    if "seed" not in bindings:
        # A graph with no sampler or noise node: a node its author titled "seed" holds it.
        for node_id in sorted(graph, key=node_sort_key):
            if (node_title(graph[node_id]) or "").strip().lower() == "seed":
                name = next((n for n in SEED_INPUTS if _has_int(graph, node_id, n)), None)
                if name is not None:
                    bind("seed", node_id, name)

    loaders = _of_class(graph, CHECKPOINT_LOADERS)
    if len(loaders) == 1:
        loader = loaders[0]
        bind("checkpoint", loader, "ckpt_name")
        if CHECKPOINT_LOADERS[graph[loader]["class_type"]]:
            bind("loras", loader)
            bind("vae", loader)
    vae_loaders = _of_class(graph, {"VAELoader"})
    if len(vae_loaders) == 1:
        bindings.pop("vae", None)
        bind("vae", vae_loaders[0], "vae_name")
    clip_skips = _of_class(graph, {"CLIPSetLastLayer"})
    if len(clip_skips) == 1:
        bind("clip_skip", clip_skips[0], "stop_at_clip_layer", transform="negate")

    for saver in _of_class(graph, SAVERS):
        bind("filename_prefix", saver, "filename_prefix")
    for node_id in _of_class(graph, FPS_INPUTS):
        bind("fps", node_id, FPS_INPUTS[graph[node_id]["class_type"]])

    images = _of_class(graph, {"LoadImage"})
    references = [n for n in images if _feeds(graph, n, REFERENCE_USERS)]
    inits = [n for n in images if n not in references]
    if len(references) == 1:
        bind("reference_image", references[0], "image")
    if len(inits) == 1:
        bind("init_image", inits[0], "image")
    for node_id in _of_class(graph, {"IPAdapter", "IPAdapterAdvanced"}):
        bind("reference_strength", node_id, "weight")

    for node_id in _of_class(graph, {"SVD_img2vid_Conditioning"}):
        bind("frames", node_id, "video_frames")
        bind("fps", node_id, "fps", transform="int")
        bind("motion_bucket", node_id, "motion_bucket_id")
        bind("augmentation", node_id, "augmentation_level")
        if latent is None:
            bind("width", node_id, "width")
            bind("height", node_id, "height")
    for node_id in _of_class(graph, {"VideoLinearCFGGuidance"}):
        bind("min_cfg", node_id, "min_cfg")
    for node_id in _of_class(graph, {"ADE_MultivalDynamic"}):
        if any(name == "scale_multival" for _t, name in consumers(graph, node_id, 0)):
            bind("motion_strength", node_id, "float_val")
    for node_id in _of_class(graph, {"ADE_AnimateDiffLoaderWithContext"}):
        bind("motion_strength", node_id, "motion_scale")
    animatediff = _of_class(graph, {"ADE_AnimateDiffLoaderGen1", "ADE_AnimateDiffLoaderWithContext"})
    if "frames" not in bindings and latent is not None and animatediff:
        # AnimateDiff renders one latent per frame: the batch is the clip length.
        bind("frames", latent, "batch_size")
        bindings.pop("batch_size", None)
    repeats = _of_class(graph, {"RepeatLatentBatch"})
    if "frames" not in bindings and animatediff and len(repeats) == 1:
        # An animation from an init image: its latent repeated once per frame.
        bind("frames", repeats[0], "amount")
    return {param: targets for param, targets in bindings.items() if targets}
