"""Stylised reference portraits drawn with Pillow (Django-free), for the example projects.

They stand in for real character art on a fresh install: a head-and-shoulders figure in the
character's colours, distinct enough per character that the references, palette and previews
have something to show. Drawing is deterministic, so the same figure always gives the same bytes.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

SIZE = 512
SCALE = 2  # drawn at twice the size and scaled down, for smooth edges

Point = tuple[float, float]


@dataclass(frozen=True)
class Figure:
    """How one character looks; coordinates below are fractions of the canvas."""

    skin: str
    hair: str
    hair_style: str  # "spiky" or "bob"
    eye_left: str  # the character's left eye (on the right of the picture)
    eye_right: str
    outfit: str
    shirt: str
    hair_streaks: str | None = None
    eye_right_glow: str | None = None  # a cybernetic eye's glow
    circuits: str | None = None  # glowing circuit lines on the face and the outfit
    glasses: str | None = None
    lapels: bool = False  # a suit jacket's lapels
    angular: bool = False
    scene: str = "neon-rain"  # the background of the scene reference: "neon-rain" or "alley-dusk"


def _px(points: list[Point]) -> list[tuple[float, float]]:
    side = SIZE * SCALE
    return [(x * side, y * side) for x, y in points]


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    side = SIZE * SCALE
    return (x0 * side, y0 * side, x1 * side, y1 * side)


def _glow(canvas: Image.Image, draw_shapes: Callable[[ImageDraw.ImageDraw], None], radius: float) -> None:
    """Draw shapes on their own layer, blur a copy under them: a neon glow."""
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw_shapes(ImageDraw.Draw(layer))
    halo = layer.filter(ImageFilter.GaussianBlur(radius * SCALE))
    for _ in range(3):  # a blurred layer alone is faint
        canvas.alpha_composite(halo)
    canvas.alpha_composite(layer)


def _circuit_lines(rng: random.Random, area: tuple[float, float, float, float], count: int) -> list[list[Point]]:
    """Right-angled traces inside ``area`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = area
    traces = []
    for _ in range(count):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        trace = [(x, y)]
        for step in range(3):
            if step % 2 == 0:
                x = min(max(x + rng.choice((-1, 1)) * rng.uniform(0.02, 0.08), x0), x1)
            else:
                y = min(max(y + rng.uniform(0.02, 0.07), y0), y1)
            trace.append((x, y))
        traces.append(trace)
    return traces


def _background(figure: Figure, side: int) -> Image.Image:
    rng = random.Random(figure.scene)  # noqa: S311 - drawing, not secrets; fixed so the bytes are too
    image = Image.new("RGBA", (side, side))
    draw = ImageDraw.Draw(image)
    top, bottom = ((10, 14, 40), (48, 12, 60)) if figure.scene == "neon-rain" else ((70, 78, 96), (150, 120, 96))
    for y in range(side):
        t = y / side
        draw.line([(0, y), (side, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    if figure.scene == "neon-rain":

        def signs(d: ImageDraw.ImageDraw) -> None:
            for colour, box in (("#ff2bd6", (0.04, 0.08, 0.22, 0.16)), ("#00e5ff", (0.76, 0.18, 0.95, 0.24))):
                d.rounded_rectangle(_box(*box), radius=8 * SCALE, outline=colour, width=5 * SCALE)

        _glow(image, signs, 10)
        for _ in range(160):
            drop_x, drop_y = rng.uniform(0, side), rng.uniform(0, side)
            draw.line(
                [(drop_x, drop_y), (drop_x - 0.02 * side, drop_y + 0.07 * side)], fill=(160, 200, 255, 90), width=SCALE
            )
    else:
        for x0 in (0.0, 0.8):
            for row in range(6):
                draw.rectangle(_box(x0, 0.1 + row * 0.14, x0 + 0.2, 0.2 + row * 0.14), fill=(58, 60, 66, 255))

        def lanterns(d: ImageDraw.ImageDraw) -> None:
            for cx, cy in ((0.1, 0.3), (0.9, 0.45), (0.12, 0.62)):
                d.ellipse(_box(cx - 0.025, cy - 0.035, cx + 0.025, cy + 0.035), fill="#f0a848")

        _glow(image, lanterns, 14)
    return image


def draw_figure(figure: Figure, *, scene: bool = False, seed: int = 0) -> bytes:
    """A PNG head-and-shoulders portrait: on a transparent background, or in its scene."""
    side = SIZE * SCALE
    rng = random.Random(seed)  # noqa: S311 - drawing, not secrets
    canvas = _background(figure, side) if scene else Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(canvas)

    if figure.hair_style == "bob":  # the back of the hair, behind the face
        draw.rounded_rectangle(_box(0.29, 0.17, 0.71, 0.64), radius=0.12 * side, fill=figure.hair)

    # Shoulders and outfit, then the collar opening and the neck.
    draw.ellipse(_box(0.1, 0.68, 0.9, 1.35), fill=figure.outfit)
    draw.polygon(_px([(0.42, 0.69), (0.58, 0.69), (0.5, 0.86)]), fill=figure.shirt)
    draw.rectangle(_box(0.445, 0.56, 0.555, 0.72), fill=figure.skin)
    if figure.lapels:
        draw.line(_px([(0.42, 0.69), (0.47, 0.9)]), fill="#1e2024", width=4 * SCALE)
        draw.line(_px([(0.58, 0.69), (0.53, 0.9)]), fill="#1e2024", width=4 * SCALE)

    # Face: angular (polygon) or soft (ellipse).
    if figure.angular:
        jaw = [(0.34, 0.25), (0.66, 0.25), (0.675, 0.44), (0.61, 0.555), (0.5, 0.62), (0.39, 0.555), (0.325, 0.44)]
        draw.polygon(_px(jaw), fill=figure.skin)
    else:
        draw.ellipse(_box(0.345, 0.22, 0.655, 0.61), fill=figure.skin)

    # Eyes: the character's right eye is on the left of the picture.
    for cx, iris in ((0.435, figure.eye_right), (0.565, figure.eye_left)):
        draw.ellipse(_box(cx - 0.04, 0.405, cx + 0.04, 0.445), fill="#f4f1ea")
        draw.ellipse(_box(cx - 0.019, 0.406, cx + 0.019, 0.444), fill=iris)
        draw.ellipse(_box(cx - 0.007, 0.418, cx + 0.007, 0.432), fill="#101015")
        draw.line(_px([(cx - 0.045, 0.385), (cx + 0.04, 0.38)]), fill=figure.hair, width=5 * SCALE)
    if figure.eye_right_glow:
        glow = figure.eye_right_glow

        def eye_ring(d: ImageDraw.ImageDraw) -> None:
            d.ellipse(_box(0.405, 0.395, 0.465, 0.455), outline=glow, width=3 * SCALE)
            d.line(_px([(0.405, 0.425), (0.37, 0.425), (0.355, 0.45)]), fill=glow, width=2 * SCALE)

        _glow(canvas, eye_ring, 6)
    if figure.glasses:
        for cx in (0.435, 0.565):
            draw.rounded_rectangle(
                _box(cx - 0.055, 0.39, cx + 0.055, 0.46), radius=0.02 * side, outline=figure.glasses, width=3 * SCALE
            )
        draw.line(_px([(0.49, 0.415), (0.51, 0.415)]), fill=figure.glasses, width=3 * SCALE)

    # Nose and mouth.
    draw.line(_px([(0.5, 0.45), (0.49, 0.505), (0.505, 0.51)]), fill="#9a6e58", width=3 * SCALE)
    draw.line(_px([(0.465, 0.55), (0.535, 0.548)]), fill="#8a4a44", width=4 * SCALE)

    # Hair in front: spiky with streaks, or a parted fringe.
    if figure.hair_style == "spiky":
        spikes = [(0.3, 0.38), (0.27, 0.22), (0.36, 0.26), (0.35, 0.1), (0.44, 0.2), (0.5, 0.06), (0.56, 0.19)]
        spikes += [(0.66, 0.1), (0.65, 0.25), (0.74, 0.22), (0.7, 0.38), (0.66, 0.28), (0.6, 0.35), (0.56, 0.29)]
        spikes += [(0.5, 0.37), (0.45, 0.29), (0.39, 0.36), (0.35, 0.29)]
        draw.polygon(_px(spikes), fill=figure.hair)
        if figure.hair_streaks:
            for streak in ([(0.36, 0.11), (0.41, 0.2), (0.4, 0.3)], [(0.66, 0.11), (0.62, 0.22), (0.63, 0.32)]):
                draw.line(_px(streak), fill=figure.hair_streaks, width=6 * SCALE, joint="curve")
            draw.line(_px([(0.5, 0.07), (0.48, 0.2), (0.5, 0.35)]), fill=figure.hair_streaks, width=5 * SCALE)
    else:
        draw.chord(_box(0.32, 0.15, 0.68, 0.47), start=180, end=360, fill=figure.hair)
        draw.polygon(_px([(0.5, 0.16), (0.36, 0.34), (0.33, 0.3)]), fill=figure.hair)
        draw.line(_px([(0.49, 0.16), (0.47, 0.3)]), fill="#3a2c24", width=2 * SCALE)

    if figure.circuits:
        colour = figure.circuits
        vest = _circuit_lines(rng, (0.24, 0.8, 0.76, 0.97), 7)
        cheek = [[(0.38, 0.47), (0.38, 0.51), (0.41, 0.53)], [(0.36, 0.46), (0.35, 0.5)]]

        def traces(d: ImageDraw.ImageDraw) -> None:
            for trace in vest + cheek:
                d.line(_px(trace), fill=colour, width=3 * SCALE)
                x, y = _px(trace[-1:])[0]
                d.ellipse((x - 4 * SCALE, y - 4 * SCALE, x + 4 * SCALE, y + 4 * SCALE), fill=colour)

        _glow(canvas, traces, 5)

    out = io.BytesIO()
    canvas.resize((SIZE, SIZE), Image.Resampling.LANCZOS).save(out, format="PNG")
    return out.getvalue()
