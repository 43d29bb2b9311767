"""Fixtures shared by the engine tests: the broker stand-in and a fake ComfyUI on a real port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from generation import tasks
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import Enqueued


@pytest.fixture
def enqueued(monkeypatch) -> Enqueued:
    """No workers: jobs stay queued, the ids handed to workers are recorded; aborts do nothing."""
    recorder = Enqueued()
    monkeypatch.setattr(tasks, "enqueue_run", recorder)
    monkeypatch.setattr(tasks, "enqueue_abort", lambda job_id: None)
    return recorder


@pytest.fixture
def fake(tmp_path) -> Iterator[FakeComfy]:
    with FakeComfy(root=tmp_path / "comfy", checkpoints=["anime_v1.safetensors"]) as server:
        yield server
