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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, ImageSequence

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


# --- image transforms ----------------------------------------------------------------------
# Each computes real pixels when an input holds them (as ComfyUI 0.3.64's code does, to within
# resampling differences) and only the geometry otherwise.

_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def _pixels(*images: Frames | None) -> bool:
    return any(img is not None and img.pixels is not None for img in images)


def _upscale(pixels: np.ndarray, width: int, height: int, method: str, crop: str) -> np.ndarray:
    """comfy.utils.common_upscale on [count, height, width, channels]: centre crop to the new aspect, then resize."""
    count, old_h, old_w, channels = pixels.shape
    if crop == "center":
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        pixels = pixels[:, y : old_h - y, x : old_w - x, :]
    if pixels.shape[1:3] == (height, width):
        return np.array(pixels, dtype=np.float32)
    resample = _RESAMPLE.get(method, Image.Resampling.BILINEAR)
    out = np.empty((count, height, width, channels), np.float32)
    for n in range(count):
        for c in range(channels):
            plane = Image.fromarray(np.ascontiguousarray(pixels[n, :, :, c]), "F")
            out[n, :, :, c] = np.asarray(plane.resize((width, height), resample))
    return np.clip(out, 0.0, 1.0)


@behaviour("ImageCrop")
def _crop(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    x = min(int(i.get("x", 0)), img.width - 1)
    y = min(int(i.get("y", 0)), img.height - 1)
    if _pixels(img):
        assert img.pixels is not None
        return NodeResult((Frames.of(img.pixels[:, y : y + int(i["height"]), x : x + int(i["width"]), :]),))
    return NodeResult((img.resized(min(int(i["width"]), img.width - x), min(int(i["height"]), img.height - y)),))


@behaviour("ImageScale", "ImageScaleToMaxDimension")
def _scale_to(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    method, crop = str(i.get("upscale_method", "bilinear")), str(i.get("crop", "disabled"))
    if "largest_size" in i:
        largest = int(i["largest_size"])
        ratio = largest / max(img.width, img.height)
        width, height, crop = round(img.width * ratio), round(img.height * ratio), "disabled"
    else:
        width, height = int(i.get("width", 0)), int(i.get("height", 0))
        if width == 0 and height == 0:
            return NodeResult((img,))
        if width == 0:
            width = round(img.width * height / img.height)
        if height == 0:
            height = round(img.height * width / img.width)
    if _pixels(img):
        assert img.pixels is not None
        return NodeResult((Frames.of(_upscale(img.pixels, width, height, method, crop)),))
    return NodeResult((img.resized(width, height),))


@behaviour("ImageScaleBy")
def _scale_by(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    factor = float(i.get("scale_by", 1.0))
    width, height = round(img.width * factor), round(img.height * factor)
    if _pixels(img):
        assert img.pixels is not None
        method = str(i.get("upscale_method", "bilinear"))
        return NodeResult((Frames.of(_upscale(img.pixels, width, height, method, "disabled")),))
    return NodeResult((img.resized(width, height),))


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
    if _pixels(img):
        assert img.pixels is not None
        return NodeResult((Frames.of(1.0 - img.pixels),))
    return NodeResult((Frames(img.width, img.height, img.count, img.channels, 0xFFFFFF - (img.color & 0xFFFFFF)),))


@behaviour("ImageFlip")
def _flip(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    if not _pixels(img):
        return NodeResult((img,))
    assert img.pixels is not None
    method = str(i["flip_method"])
    # "x-axis: vertically" flips the rows (dim 1), "y-axis: horizontally" the columns (dim 2).
    axis = 1 if method.startswith("x") else 2 if method.startswith("y") else None
    return NodeResult((Frames.of(img.pixels if axis is None else np.flip(img.pixels, axis=axis)),))


@behaviour("ImageRotate")
def _rotate(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    rotation = str(i["rotation"])
    turns = next((k for k, name in ((1, "90"), (2, "180"), (3, "270")) if rotation.startswith(name)), 0)
    if not _pixels(img):
        return NodeResult((img.resized(img.height, img.width) if turns % 2 else img,))
    assert img.pixels is not None
    # torch.rot90(image, k, dims=[2, 1]): from the width axis towards the height axis.
    return NodeResult((Frames.of(np.rot90(img.pixels, k=turns, axes=(2, 1))),))


def _blend_mode(a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return np.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        g = np.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, np.sqrt(a))
        return np.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (g - a))
    if mode == "difference":
        return a - b
    raise NodeRuntimeError("ValueError", f"Unsupported blend mode: {mode}")


def _batch_mismatch(a: int, b: int) -> NodeRuntimeError:
    return NodeRuntimeError(
        "RuntimeError",
        f"The size of tensor a ({a}) must match the size of tensor b ({b}) at non-singleton dimension 0",
    )


@behaviour("ImageBlend")
def _blend(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    a: Frames = i["image1"]
    b: Frames = i["image2"]
    if not _pixels(a, b):
        return NodeResult((a,))
    one, two = a.array(), b.array()
    if one.shape[-1] != two.shape[-1]:  # node_helpers.image_alpha_fix: add an opaque alpha
        if one.shape[-1] < two.shape[-1]:
            one = np.concatenate([one, np.ones((*one.shape[:-1], 1), np.float32)], axis=-1)
        else:
            two = np.concatenate([two, np.ones((*two.shape[:-1], 1), np.float32)], axis=-1)
    if one.shape != two.shape:
        two = _upscale(two, a.width, a.height, "bicubic", "center")
    if one.shape[0] != two.shape[0] and 1 not in (one.shape[0], two.shape[0]):
        raise _batch_mismatch(one.shape[0], two.shape[0])
    factor = float(i.get("blend_factor", 0.5))
    blended = one * (1 - factor) + _blend_mode(one, two, str(i.get("blend_mode", "normal"))) * factor
    return NodeResult((Frames.of(np.clip(blended, 0.0, 1.0)),))


@behaviour("ImageAddNoise")
def _add_noise(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    if not _pixels(img):
        return NodeResult((img,))
    pixels = img.array()
    # One draw over the whole batch, as torch.randn(image.size()) with the seed's generator:
    # numpy's generator gives other numbers, the same statistics.
    rng = np.random.default_rng(int(i.get("seed", 0)) % 2**64)
    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    return NodeResult((Frames.of(np.clip(pixels + float(i.get("strength", 0.5)) * noise, 0.0, 1.0)),))


@behaviour("ImageBlur")
def _blur(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    radius = int(i.get("blur_radius", 1))
    if not _pixels(img) or radius == 0:
        return NodeResult((img,))
    size = radius * 2 + 1
    # ComfyUI's gaussian_kernel spans -1..1 whatever its size (sigma is in those units).
    x, y = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    kernel = np.exp(-(x * x + y * y) / (2 * float(i.get("sigma", 1.0)) ** 2))
    kernel = (kernel / kernel.sum()).astype(np.float32)
    pixels = img.array()
    out = np.empty_like(pixels)
    for n in range(pixels.shape[0]):
        for c in range(pixels.shape[3]):
            out[n, :, :, c] = cv2.filter2D(pixels[n, :, :, c], -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return NodeResult((Frames.of(out),))


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
    if _pixels(a, b) or a.color != b.color:
        two = b.array()
        if (b.height, b.width) != (a.height, a.width):
            two = _upscale(two, a.width, a.height, "bilinear", "center")
        return NodeResult((Frames.of(np.concatenate([a.array(), two], axis=0)),))
    return NodeResult((Frames(a.width, a.height, a.count + b.count, a.channels, a.color),))


@behaviour("RepeatImageBatch")
def _repeat(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    amount = int(i.get("amount", 1))
    if _pixels(img):
        assert img.pixels is not None
        return NodeResult((Frames.of(np.tile(img.pixels, (amount, 1, 1, 1))),))
    return NodeResult((Frames(img.width, img.height, img.count * amount, img.channels, img.color),))


@behaviour("ImageFromBatch")
def _from_batch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    img: Frames = i["image"]
    start = min(int(i.get("batch_index", 0)), img.count - 1)
    length = min(int(i.get("length", 1)), img.count - start)
    if _pixels(img):
        assert img.pixels is not None
        return NodeResult((Frames.of(img.pixels[start : start + length]),))
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


_SPACING_COLORS = {
    "white": (1.0,),
    "black": (0.0,),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
}


@behaviour("ImageStitch")
def _stitch(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    a: Frames = i["image1"]
    b: Frames | None = i.get("image2")
    if b is None:
        return NodeResult((a,))
    direction = str(i.get("direction", "right"))
    across = direction in ("left", "right")
    match = bool(i.get("match_image_size", True))
    spacing = int(i.get("spacing_width", 0))
    spacing += spacing % 2
    if match:  # image2 takes image1's height (across) or width, keeping its aspect (lanczos)
        b_w, b_h = (
            (int(a.height * b.width / b.height), a.height) if across else (a.width, int(a.width * b.height / b.width))
        )
    else:
        b_w, b_h = b.width, b.height
    if not _pixels(a, b):
        if across:
            return NodeResult((a.resized(a.width + spacing + b_w, max(a.height, b_h)),))
        return NodeResult((a.resized(max(a.width, b_w), a.height + spacing + b_h),))
    one, two = a.array(), b.array()
    count = max(one.shape[0], two.shape[0])  # the shorter batch repeats its last image
    one = np.concatenate([one, np.repeat(one[-1:], count - one.shape[0], axis=0)])
    two = np.concatenate([two, np.repeat(two[-1:], count - two.shape[0], axis=0)])
    if match:
        two = np.floor(_upscale(two, b_w, b_h, "lanczos", "disabled") * 255.0) / 255.0
    else:  # pad the other dimension, centred, with the spacing colour's grey (black for a colour)
        colour = _SPACING_COLORS[str(i.get("spacing_color", "white"))]
        fill = colour[0] if len(colour) == 1 else 0.0
        axis = 1 if across else 2
        size = max(one.shape[axis], two.shape[axis])
        one, two = (_pad_centred(p, axis, size, fill) for p in (one, two))
    channels = max(one.shape[-1], two.shape[-1])
    one, two = (_with_channels(p, channels) for p in (one, two))
    parts = [one, two] if direction in ("right", "down") else [two, one]
    if spacing:
        colour = _SPACING_COLORS[str(i.get("spacing_color", "white"))]
        shape = (
            (count, max(one.shape[1], two.shape[1]), spacing, channels)
            if across
            else (count, spacing, max(one.shape[2], two.shape[2]), channels)
        )
        band = np.zeros(shape, np.float32)
        for c, value in enumerate(colour if len(colour) > 1 else colour * channels):
            if c < channels:
                band[..., c] = value
        parts.insert(1, band)
    return NodeResult((Frames.of(np.concatenate(parts, axis=2 if across else 1)),))


def _pad_centred(pixels: np.ndarray, axis: int, size: int, fill: float) -> np.ndarray:
    missing = size - pixels.shape[axis]
    if missing <= 0:
        return pixels
    widths = [(0, 0)] * 4
    widths[axis] = (missing // 2, missing - missing // 2)
    return np.pad(pixels, widths, constant_values=fill)


def _with_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if pixels.shape[-1] >= channels:
        return pixels
    extra = np.ones((*pixels.shape[:-1], channels - pixels.shape[-1]), np.float32)
    return np.concatenate([pixels, extra], axis=-1)


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
