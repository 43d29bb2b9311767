"""Dominant colours of an image (Django-free): median-cut on a small copy, as hex strings."""

from __future__ import annotations

import io

from PIL import Image


def extract_palette(data: bytes, *, colors: int = 6) -> list[str]:
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGBA")
        small.thumbnail((128, 128))
    # Drop transparent pixels: a cut-out character's background is not part of its palette.
    opaque = [p for p in small.get_flattened_data() if p[3] >= 128]
    if not opaque:
        return []
    strip = Image.new("RGB", (len(opaque), 1))
    strip.putdata([p[:3] for p in opaque])
    quantized = strip.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    counts = sorted(quantized.getcolors() or [], reverse=True)
    result = []
    for _count, index in counts:
        r, g, b = palette[index * 3 : index * 3 + 3]
        hex_colour = f"#{r:02x}{g:02x}{b:02x}"
        if hex_colour not in result:
            result.append(hex_colour)
    return result[:colors]
