"""The fake ComfyUI (two checkpoints, Video Helper Suite) and a client connected to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generation.comfyui import ComfyClient
from tests.fakes.comfyui import FakeComfy


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeComfy]:
    with FakeComfy(
        root=tmp_path / "comfyui",
        checkpoints=["anime_v1.safetensors", "anime_v2.safetensors"],
        video_helper_suite=True,
    ) as server:
        yield server


@pytest.fixture
async def client(fake: FakeComfy) -> Any:
    async with ComfyClient(fake.url, timeout=5) as comfy:
        yield comfy
