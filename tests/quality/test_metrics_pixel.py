"""Weight-free metrics: SSIM, sharpness, palette distance in CIE Lab."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from quality.metrics import MetricInputError, Status, palette_distance, sharpness, ssim
from quality.metrics.pixel import hex_to_rgb, rgb_to_lab

PALETTE = ["#1e90ff", "#ffd700", "#222222"]


def stripes(colours: list[str], size: int = 60) -> np.ndarray:
    image = np.zeros((size, size, 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        image[:, i * size // len(colours) : (i + 1) * size // len(colours)] = hex_to_rgb(colour)
    return image


def test_palette_distance_is_zero_for_the_palettes_own_colours():
    result = palette_distance(stripes(PALETTE), PALETTE)
    assert result.status is Status.OK
    assert result.value == 0.0
    assert set(result.details["per_colour"]) == set(PALETTE)


def test_palette_distance_grows_with_the_colour_difference():
    near = palette_distance(stripes(["#1e8cff", "#ffd200", "#262626"]), PALETTE).value
    far = palette_distance(stripes(["#ff0000", "#00ff00", "#ffffff"]), PALETTE).value
    assert 0 < near < 5 < far
    # a rich picture goes through k-means and still finds its own dominant colour
    noisy = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    noisy[:, :40] = hex_to_rgb("#1e90ff")
    assert palette_distance(noisy, ["#1e90ff"]).value < 3


def test_lab_of_known_colours():
    assert rgb_to_lab(np.array([255, 255, 255], np.uint8)) == pytest.approx([100, 0, 0], abs=0.01)
    assert rgb_to_lab(np.array([255, 0, 0], np.uint8)) == pytest.approx([53.24, 80.09, 67.20], abs=0.05)


def test_palette_input_errors():
    with pytest.raises(MetricInputError):
        palette_distance(stripes(PALETTE), ["blue"])
    assert palette_distance(stripes(PALETTE), []).status is Status.ERROR
    assert hex_to_rgb("#fff") == (255, 255, 255)


def test_ssim_and_sharpness():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(image, (0, 0), 2)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-6)
    assert ssim(image, blurred) < 0.9
    assert sharpness(blurred) < sharpness(image) / 4
    with pytest.raises(MetricInputError):
        ssim(image, image[:32])
