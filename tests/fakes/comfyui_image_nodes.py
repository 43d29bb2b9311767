"""The fake ComfyUI's weightless image nodes: real pixels as ComfyUI 0.3.64 computes them when an input
holds pixels, the geometry alone otherwise."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

from tests.fakes.comfyui_media import Frames
from tests.fakes.comfyui_node_types import NodeContext, NodeResult, NodeRuntimeError, behaviour

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
