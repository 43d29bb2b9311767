"""Dominant colours of an image (Django-free): median-cut on a small copy, as hex strings.

The background is left out: a reference sheet is mostly a plain backdrop, and its colour is not
the character's. Transparent pixels go, and so does the region joined to the image's border whose
colour is the border's most common one (a flood fill from the edges, with a tolerance for JPEG noise
and soft gradients).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Euclidean RGB distance within which a pixel counts as the backdrop's colour.
BACKGROUND_TOLERANCE = 40.0
# The border's most common colour is a backdrop only when it covers this share of the border.
BACKGROUND_BORDER_SHARE = 0.4
# Below this share of foreground pixels the "background" is the picture itself (a flat swatch).
MIN_FOREGROUND_SHARE = 0.02


def _border(mask: np.ndarray) -> np.ndarray:
    edge = np.zeros_like(mask)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    return edge & mask


def background_mask(rgb: np.ndarray, opaque: np.ndarray) -> np.ndarray:
    """Pixels of the backdrop: joined to the border and close to the border's dominant colour."""
    edge = _border(opaque)
    if not edge.any():
        return np.zeros_like(opaque)
    border = rgb[edge].astype(np.int32)
    buckets = (border >> 4) @ np.array([256, 16, 1])  # 4 bits a channel: tolerant of noise
    values, counts = np.unique(buckets, return_counts=True)
    dominant = border[buckets == values[counts.argmax()]].mean(axis=0)
    close = (np.linalg.norm(rgb.astype(np.float32) - dominant, axis=2) <= BACKGROUND_TOLERANCE) & opaque
    if close[edge].mean() < BACKGROUND_BORDER_SHARE:
        return np.zeros_like(opaque)  # no backdrop: the picture runs to the edges
    region = close & edge
    while True:  # grow through 4-neighbours that are close to the backdrop colour
        grown = region.copy()
        grown[1:, :] |= region[:-1, :]
        grown[:-1, :] |= region[1:, :]
        grown[:, 1:] |= region[:, :-1]
        grown[:, :-1] |= region[:, 1:]
        grown &= close
        if (grown == region).all():
            return region
        region = grown


def extract_palette(data: bytes, *, colors: int = 6) -> list[str]:
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGBA")
        small.thumbnail((128, 128))
    pixels = np.asarray(small)
    rgb, opaque = pixels[..., :3], pixels[..., 3] >= 128
    if not opaque.any():
        return []
    foreground = opaque & ~background_mask(rgb, opaque)
    if foreground.sum() < MIN_FOREGROUND_SHARE * opaque.sum():
        foreground = opaque
    chosen = rgb[foreground]
    strip = Image.fromarray(np.ascontiguousarray(chosen.reshape(1, -1, 3)), mode="RGB")
    quantized = strip.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    counts = sorted(quantized.getcolors() or [], reverse=True)
    result = []
    for _count, index in counts:
        if not isinstance(index, int):  # a "P" image's colours are palette indexes: always int
            continue
        r, g, b = palette[index * 3 : index * 3 + 3]
        hex_colour = f"#{r:02x}{g:02x}{b:02x}"
        if hex_colour not in result:
            result.append(hex_colour)
    return result[:colors]
