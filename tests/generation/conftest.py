"""Fixtures shared by the engine tests: the broker stand-in and a fake ComfyUI on a real port; for the
image-input tests, a ComfyUI with IPAdapter Plus and a character with references."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from characters.services import character_add_reference, character_create
from generation import tasks
from tests.factories import png_bytes
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import Enqueued, shipped
from tests.generation.image_input_helpers import CHECKPOINT, IPADAPTER_NODES


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


@pytest.fixture
def one_job_per_task(settings):
    settings.TOWER_ENGINE_SESSION_JOBS = 1


@pytest.fixture
def shipped_templates(db):
    shipped("weightless-image")  # loads every shipped template


@pytest.fixture
def comfy(tmp_path):
    """A ComfyUI with IPAdapter Plus installed."""
    with FakeComfy(root=tmp_path / "comfy", checkpoints=[CHECKPOINT], extra_object_info=IPADAPTER_NODES) as server:
        yield server


@pytest.fixture
def kai(project):
    """A character with two references; the first (red) is the primary one."""
    character = character_create(project=project, name="Kai", design_prompt="1boy, silver hair")
    character_add_reference(character=character, upload=io.BytesIO(png_bytes(80, 96, (200, 10, 10))))
    character_add_reference(character=character, upload=io.BytesIO(png_bytes(80, 96, (10, 200, 10))))
    return character
