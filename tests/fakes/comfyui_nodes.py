"""What the fake ComfyUI's nodes compute: geometry in, geometry out, files for output nodes.

Models are not run: a sampler's image is a fill of the right size. The weightless image nodes
(LoadImage, ImageScale, ImageCrop, ImageFlip, ImageRotate, ImageInvert, ImageBlend,
ImageAddNoise, ImageBlur, ImageBatch, RepeatImageBatch, ImageFromBatch, ImageStitch) compute real
pixels, as ComfyUI 0.3.64's code does, whenever an input holds pixels (from a loaded image), and
only the geometry otherwise. A class without a behaviour passes its first IMAGE-like input
through, or yields an opaque token per output.
"""

from __future__ import annotations

import os
import random
import re
import string
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, ImageSequence

from tests.fakes import comfyui_framepack, comfyui_image_nodes  # noqa: F401  (register their behaviours)
from tests.fakes.comfyui_media import (
    Frames,
    animated_webp_bytes,
    apng_bytes,
    mp4_bytes,
    png_bytes,
    png_text_chunks,
    webm_bytes,
)
from tests.fakes.comfyui_node_types import (
    BEHAVIOURS,
    Latent,
    NodeContext,
    NodeResult,
    NodeRuntimeError,
    Token,
    Video,
    behaviour,
    first_input,
)

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


def run_node(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    fn = BEHAVIOURS.get(ctx.class_type, _default)
    return fn(ctx, inputs)


def _default(ctx: NodeContext, inputs: dict[str, Any]) -> NodeResult:
    image = first_input(inputs, Frames)
    latent = first_input(inputs, Latent)
    video = first_input(inputs, Video)
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
            frames, alphas = _read_frames(img)
    except FileNotFoundError as exc:
        raise NodeRuntimeError(
            "FileNotFoundError", f"[Errno 2] No such file or directory: '{os.fspath(path)}'"
        ) from exc
    image = Frames.of(np.stack(frames))
    # LoadImage's mask is 1 - alpha: empty (0) for an opaque image.
    mask = Frames.of(1.0 - np.stack(alphas)) if alphas else Frames(image.width, image.height, image.count, 1, 0)
    if ctx.class_type == "LoadImageMask":
        return NodeResult((mask,))
    return NodeResult((image, mask))


def _read_frames(img: Image.Image) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """LoadImage's reading: every frame of the size of the first, as RGB floats, and their alphas."""
    frames: list[np.ndarray] = []
    alphas: list[np.ndarray] = []
    for frame in ImageSequence.Iterator(img):
        frame = ImageOps.exif_transpose(frame) or frame
        if frames and frame.size != (frames[0].shape[1], frames[0].shape[0]):
            continue
        frames.append(np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0)
        if "A" in frame.getbands():
            alphas.append(np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0)
    return frames, alphas


@behaviour("CheckpointLoaderSimple", "CheckpointLoader", "ImageOnlyCheckpointLoader", "unCLIPCheckpointLoader")
def _checkpoint(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    name = str(i.get("ckpt_name", ""))
    return NodeResult(tuple(Token(t, name) for t in ctx.output_types))


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
