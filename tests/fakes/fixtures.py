"""Pytest fixtures for the fake ComfyUI (import them into a conftest or test module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.comfyui import FakeComfy


@pytest.fixture
def fake_comfy(tmp_path: Path) -> Iterator[FakeComfy]:
    """A fake ComfyUI on a free loopback port, files under tmp_path; tune it with .configure()."""
    with FakeComfy(
        root=tmp_path / "comfyui",
        checkpoints=["anime_v1.safetensors", "anime_v2.safetensors"],
        loras=["kai_style.safetensors"],
        video_helper_suite=True,
    ) as fake:
        yield fake
