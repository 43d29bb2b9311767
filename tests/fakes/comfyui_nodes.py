"""What the fake ComfyUI's nodes compute: geometry in, geometry out, files for output nodes.

Nodes are not run for real; each behaviour maps its inputs (constants or upstream values) to
outputs that carry enough to size the files written by the output nodes. A class without a
behaviour passes its first IMAGE-like input through, or yields an opaque token per output.
"""

from __future__ import annotations

import os
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tests.fakes.comfyui_media import (
    Frames,
    animated_webp_bytes,
    apng_bytes,
    mp4_bytes,
    png_bytes,
    png_text_chunks,
    webm_bytes,
)


class NodeRuntimeError(Exception):
    """A failure inside a node, reported as execution_error with this type name and message."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass(frozen=True)
class Token:
    """An opaque value (MODEL, CLIP, CONDITIONING, ...) with what it came from."""

    type: str
    name: str = ""


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    count: int = 1


@dataclass(frozen=True)
class Video:
    frames: Frames
    fps: float


@dataclass
class NodeContext:
    """What a behaviour may use besides its inputs."""

    node_id: str
    class_type: str
    output_types: list[str]
    prompt: dict
    extra_pnginfo: dict | None
    dirs: dict[str, Path]  # input, output, temp
    temp_prefix: str = ""


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict | None = None
    ws_images: list[Image.Image] = field(default_factory=list)  # SaveImageWebsocket frames


Behaviour = Callable[[NodeContext, dict[str, Any]], NodeResult]
BEHAVIOURS: dict[str, Behaviour] = {}

# Nodes whose progress bar counts sampling steps: class -> (steps input, default steps).
SAMPLERS: dict[str, tuple[str, int]] = {
    "KSampler": ("steps", 20),
    "KSamplerAdvanced": ("steps", 20),
    "SamplerCustom": ("", 20),
    "SamplerCustomAdvanced": ("", 20),
}

# Classes whose IS_CHANGED differs on every run (never served from cache).
ALWAYS_CHANGED = {"SaveImageWebsocket"}

# Model loaders: class -> the input naming the checkpoint (for model-load accounting).
MODEL_LOADERS: dict[str, str] = {
    "CheckpointLoaderSimple": "ckpt_name",
    "CheckpointLoader": "ckpt_name",
    "ImageOnlyCheckpointLoader": "ckpt_name",
    "unCLIPCheckpointLoader": "ckpt_name",
    "UNETLoader": "unet_name",
}


def behaviour(*names: str) -> Callable[[Behaviour], Behaviour]:
    def register(fn: Behaviour) -> Behaviour:
        for name in names:
            BEHAVIOURS[name] = fn
        return fn

    return register


def run_node(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    fn = BEHAVIOURS.get(ctx.class_type, _default)
    return fn(ctx, inputs)


def _first(inputs: dict[str, Any], kind: type) -> Any:
    for value in inputs.values():
        if isinstance(value, kind):
            return value
    return None


def _default(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    image = _first(inputs, Frames)
    latent = _first(inputs, Latent)
    video = _first(inputs, Video)
    base = image or (video.frames if video else None)
    if base is None and latent is not None:
        base = Frames(latent.width, latent.height, latent.count)
    base = base or Frames(64, 64)
    outputs: list[Any] = []
    for out_type in ctx.output_types:
        if out_type == "IMAGE":
            outputs.append(base if base.channels != 1 else Frames(base.width, base.height, base.count))
        elif out_type == "MASK":
            outputs.append(Frames(base.width, base.height, base.count, channels=1, color=255))
        elif out_type == "LATENT":
            outputs.append(latent or Latent(base.width, base.height, base.count))
        elif out_type == "VIDEO":
            outputs.append(video or Video(base, 24.0))
        else:
            passthrough = next((v for v in inputs.values() if isinstance(v, Token) and v.type == out_type), None)
            outputs.append(passthrough or Token(out_type, ctx.class_type))
    return NodeResult(tuple(outputs))


# --- sources -------------------------------------------------------------------------------


@behaviour("EmptyImage")
def _empty_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Frames(i["width"], i["height"], i["batch_size"], 3, i["color"]),))


@behaviour("SolidMask")
def _solid_mask(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    level = round(float(i["value"]) * 255)
    return NodeResult((Frames(i["width"], i["height"], 1, 1, level),))


@behaviour("EmptyLatentImage", "EmptySD3LatentImage", "EmptyHunyuanLatentVideo")
def _empty_latent(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    count = int(i.get("batch_size", 1)) * int(i.get("length", 1))
    return NodeResult((Latent(int(i.get("width", 512)), int(i.get("height", 512)), count),))


@behaviour("LoadImage", "LoadImageMask")
def _load_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    name = str(i.get("image", ""))
    path = ctx.dirs["input"] / name
    try:
        with Image.open(path) as img:
            size = img.size
    except FileNotFoundError as exc:
        raise NodeRuntimeError(
            "FileNotFoundError", f"[Errno 2] No such file or directory: '{os.fspath(path)}'"
        ) from exc
    image = Frames(size[0], size[1], 1, 3, 0x808080)
    # LoadImage's mask is 1 - alpha: empty (0) for an opaque image.
    mask = Frames(size[0], size[1], 1, 1, 0)
    if ctx.class_type == "LoadImageMask":
        return NodeResult((mask,))
    return NodeResult((image, mask))


@behaviour("CheckpointLoaderSimple", "CheckpointLoader", "ImageOnlyCheckpointLoader", "unCLIPCheckpointLoader")
def _checkpoint(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    name = str(i.get("ckpt_name", ""))
    return NodeResult(tuple(Token(t, name) for t in ctx.output_types))


# --- image transforms ----------------------------------------------------------------------


@behaviour("ImageCrop")
def _crop(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    x = min(int(i.get("x", 0)), img.width - 1)
    y = min(int(i.get("y", 0)), img.height - 1)
    return NodeResult((img.resized(min(int(i["width"]), img.width - x), min(int(i["height"]), img.height - y)),))


@behaviour("ImageScale", "ImageScaleToMaxDimension")
def _scale_to(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    if "largest_size" in i:
        largest = int(i["largest_size"])
        ratio = largest / max(img.width, img.height)
        return NodeResult((img.resized(round(img.width * ratio), round(img.height * ratio)),))
    width, height = int(i.get("width", 0)), int(i.get("height", 0))
    if width == 0 and height == 0:
        return NodeResult((img,))
    if width == 0:
        width = round(img.width * height / img.height)
    if height == 0:
        height = round(img.height * width / img.width)
    return NodeResult((img.resized(width, height),))


@behaviour("ImageScaleBy")
def _scale_by(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    factor = float(i.get("scale_by", 1.0))
    return NodeResult((img.resized(round(img.width * factor), round(img.height * factor)),))


@behaviour("ImagePadForOutpaint")
def _pad(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    width = img.width + int(i.get("left", 0)) + int(i.get("right", 0))
    height = img.height + int(i.get("top", 0)) + int(i.get("bottom", 0))
    padded = img.resized(width, height)
    return NodeResult((padded, Frames(width, height, img.count, 1, 0)))


@behaviour("ImageInvert")
def _invert(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    return NodeResult((Frames(img.width, img.height, img.count, img.channels, 0xFFFFFF - (img.color & 0xFFFFFF)),))


@behaviour("ImageBatch")
def _batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    a: Frames = i["image1"]
    b: Frames = i["image2"]
    if a.channels != b.channels:
        raise NodeRuntimeError(
            "RuntimeError",
            "Sizes of tensors must match except in dimension 0. Expected size "
            f"{a.channels} but got size {b.channels} for tensor number 1 in the list.",
        )
    return NodeResult((Frames(a.width, a.height, a.count + b.count, a.channels, a.color),))


@behaviour("RepeatImageBatch")
def _repeat(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    return NodeResult((Frames(img.width, img.height, img.count * int(i.get("amount", 1)), img.channels, img.color),))


@behaviour("ImageFromBatch")
def _from_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    start = min(int(i.get("batch_index", 0)), img.count - 1)
    length = min(int(i.get("length", 1)), img.count - start)
    return NodeResult((Frames(img.width, img.height, max(1, length), img.channels, img.color),))


@behaviour("JoinImageWithAlpha")
def _join_alpha(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    return NodeResult((Frames(img.width, img.height, img.count, 4, img.color),))


@behaviour("SplitImageWithAlpha")
def _split_alpha(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    return NodeResult(
        (Frames(img.width, img.height, img.count, 3, img.color), Frames(img.width, img.height, img.count, 1, 255))
    )


@behaviour("MaskToImage")
def _mask_to_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    mask: Frames = i["mask"]
    grey = mask.color & 0xFF
    return NodeResult((Frames(mask.width, mask.height, mask.count, 3, grey * 0x010101),))


@behaviour("ImageToMask", "ImageColorToMask")
def _image_to_mask(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    return NodeResult((Frames(img.width, img.height, img.count, 1, 255),))


@behaviour("ImageStitch")
def _stitch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    a: Frames = i["image1"]
    b: Frames | None = i.get("image2")
    if b is None:
        return NodeResult((a,))
    if i.get("direction", "right") in ("left", "right"):
        return NodeResult((a.resized(a.width + b.width, a.height),))
    return NodeResult((a.resized(a.width, a.height + b.height),))


# --- latent / sampling ---------------------------------------------------------------------


@behaviour("VAEDecode", "VAEDecodeTiled")
def _vae_decode(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    latent: Latent = i["samples"]
    return NodeResult((Frames(latent.width, latent.height, latent.count, 3, 0x6080A0),))


@behaviour("VAEEncode")
def _vae_encode(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["pixels"]
    return NodeResult((Latent(img.width, img.height, img.count),))


@behaviour("CreateVideo")
def _create_video(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Video(i["images"], float(i.get("fps", 30.0))),))


@behaviour("GetVideoComponents")
def _video_components(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    video: Video = i["video"]
    return NodeResult((video.frames, Token("AUDIO"), video.fps))


# --- output nodes --------------------------------------------------------------------------


def _save_path(ctx: NodeContext, prefix: str, folder: str) -> tuple[Path, str, str, int]:
    """ComfyUI's naming: prefix may hold a subfolder; the counter follows the files present."""
    prefix = prefix.replace("\\", "/")
    subfolder, _, name = prefix.rpartition("/")
    base = ctx.dirs[folder]
    directory = (base / subfolder).resolve()
    if os.path.commonpath((str(base.resolve()), str(directory))) != str(base.resolve()):
        raise NodeRuntimeError("Exception", "**** ERROR: Saving image outside the output folder is not allowed.")
    directory.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(re.escape(name) + r"_(\d+)_")
    counter = 1
    for existing in os.listdir(directory):
        match = pattern.match(existing)
        if match:
            counter = max(counter, int(match.group(1)) + 1)
    return directory, subfolder, name, counter


def _save_images(ctx: NodeContext, images: Frames, prefix: str, folder: str, compress: int) -> list[dict]:
    directory, subfolder, name, counter = _save_path(ctx, prefix, folder)
    text = png_text_chunks(ctx.prompt, ctx.extra_pnginfo)
    results = []
    for index in range(images.count):
        filename = f"{name}_{counter:05}_.png"
        (directory / filename).write_bytes(png_bytes(images.image(index), text, compress))
        results.append({"filename": filename, "subfolder": subfolder, "type": folder})
        counter += 1
    return results


@behaviour("SaveImage")
def _save_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult(
        (), {"images": _save_images(ctx, i["images"], str(i.get("filename_prefix", "ComfyUI")), "output", 4)}
    )


@behaviour("PreviewImage")
def _preview_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((), {"images": _save_images(ctx, i["images"], ctx.temp_prefix, "temp", 1)})


@behaviour("MaskPreview")
def _mask_preview(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    mask: Frames = i["mask"]
    images = Frames(mask.width, mask.height, mask.count, 3, (mask.color & 0xFF) * 0x010101)
    return NodeResult((), {"images": _save_images(ctx, images, ctx.temp_prefix, "temp", 1)})


def _single_file(ctx: NodeContext, prefix: str, ext: str, data: bytes) -> dict:
    directory, subfolder, name, counter = _save_path(ctx, prefix, "output")
    filename = f"{name}_{counter:05}_.{ext}"
    (directory / filename).write_bytes(data)
    return {"filename": filename, "subfolder": subfolder, "type": "output"}


@behaviour("SaveAnimatedWEBP")
def _save_webp(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    images: Frames = i["images"]
    methods = {"default": 4, "fastest": 0, "slowest": 6}
    data = animated_webp_bytes(
        images,
        float(i.get("fps", 6.0)),
        bool(i.get("lossless", True)),
        int(i.get("quality", 80)),
        methods.get(str(i.get("method", "default")), 4),
    )
    entry = _single_file(ctx, str(i.get("filename_prefix", "ComfyUI")), "webp", data)
    return NodeResult((), {"images": [entry], "animated": [images.count != 1]})


@behaviour("SaveAnimatedPNG")
def _save_apng(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    images: Frames = i["images"]
    text = png_text_chunks(ctx.prompt, ctx.extra_pnginfo)
    data = apng_bytes(images, float(i.get("fps", 6.0)), text, int(i.get("compress_level", 4)))
    entry = _single_file(ctx, str(i.get("filename_prefix", "ComfyUI")), "png", data)
    return NodeResult((), {"images": [entry], "animated": [images.count != 1]})


@behaviour("SaveWEBM")
def _save_webm(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    images: Frames = i["images"]
    data = webm_bytes(images, float(i.get("fps", 24.0)))
    entry = _single_file(ctx, str(i.get("filename_prefix", "ComfyUI")), "webm", data)
    return NodeResult((), {"images": [entry], "animated": [True]})


@behaviour("SaveVideo")
def _save_video(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    video: Video = i["video"]
    data = mp4_bytes(video.frames, video.fps)
    entry = _single_file(ctx, str(i.get("filename_prefix", "video/ComfyUI")), "mp4", data)
    return NodeResult((), {"images": [entry], "animated": [True]})


@behaviour("VHS_VideoCombine")
def _vhs_video_combine(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    """Video Helper Suite's combine node, which reports its file under ``gifs``."""
    images: Frames = i["images"]
    fps = float(i.get("frame_rate", 8))
    data = mp4_bytes(images, fps)
    entry = _single_file(ctx, str(i.get("filename_prefix", "AnimateDiff")), "mp4", data)
    entry.update({"format": "video/h264-mp4", "frame_rate": fps, "workflow": "", "fullpath": ""})
    return NodeResult((), {"gifs": [entry]})


@behaviour("SaveImageWebsocket")
def _save_image_websocket(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    images: Frames = i["images"]
    return NodeResult((), None, [images.image(n) for n in range(images.count)])


def temp_prefix() -> str:
    """PreviewImage's prefix: 'ComfyUI_temp_' and five random letters, fixed per node object."""
    return "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))


VHS_OBJECT_INFO: dict[str, Any] = {
    "VHS_VideoCombine": {
        "input": {
            "required": {
                "images": ["IMAGE"],
                "frame_rate": ["FLOAT", {"default": 8, "min": 1, "step": 1}],
                "loop_count": ["INT", {"default": 0, "min": 0, "max": 100, "step": 1}],
                "filename_prefix": ["STRING", {"default": "AnimateDiff"}],
                "format": [["image/gif", "image/webp", "video/h264-mp4"], {}],
                "pingpong": ["BOOLEAN", {"default": False}],
                "save_output": ["BOOLEAN", {"default": True}],
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        },
        "input_order": {
            "required": ["images", "frame_rate", "loop_count", "filename_prefix", "format", "pingpong", "save_output"],
            "hidden": ["prompt", "extra_pnginfo", "unique_id"],
        },
        "output": ["VHS_FILENAMES"],
        "output_is_list": [False],
        "output_name": ["Filenames"],
        "name": "VHS_VideoCombine",
        "display_name": "Video Combine 🎥🅥🅗🅢",
        "description": "",
        "python_module": "custom_nodes.ComfyUI-VideoHelperSuite",
        "category": "Video Helper Suite 🎥🅥🅗🅢",
        "output_node": True,
    }
}
