"""Shared set-up for the trainer and LoRA tests (no tests here): approved images, the fake kohya trainer.

Modules import the fixtures as plain assignments (``enqueued = helpers.enqueued``) so they stay visible
to pytest without a conftest of their own.
"""

from __future__ import annotations

import shlex
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from tests.factories import CharacterFactory, png_bytes
from training.models import DatasetImage, DatasetSource, ReviewStatus

FAKE_TRAINER = Path(__file__).resolve().parents[1] / "fakes" / "kohya_trainer.py"


def fake_command(*extra: str) -> str:
    return shlex.join([sys.executable, str(FAKE_TRAINER), *extra])


def add_images(character, count: int, *, status: str = ReviewStatus.APPROVED, start: int = 0) -> list[DatasetImage]:
    images = []
    for i in range(start, start + count):
        image = DatasetImage(
            character=character,
            sha256=f"{character.pk:08x}{i:056x}",
            source=DatasetSource.UPLOAD,
            status=status,
            width=64,
            height=64,
            caption=f"1boy, pose {i}",
        )
        image.image.save(f"img{i}.png", ContentFile(png_bytes(colour=(i * 20 % 255, 40, 40))), save=False)
        image.save()
        images.append(image)
    return images


def wait_for(predicate: Callable[[], object], *, timeout: float = 30.0, what: str = "condition") -> object:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class Enqueued:
    """Stands in for the broker: records the dispatches services ask for."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def enqueued(monkeypatch) -> Enqueued:
    from training.trainer import services

    calls = Enqueued()
    monkeypatch.setattr(services, "enqueue_dispatch", calls)
    return calls


@pytest.fixture
def trainer(settings, tmp_path):
    """Settings for the fake trainer; returns a function to change its options."""
    settings.TOWER_TRAINER_COMMAND = fake_command()
    settings.TOWER_TRAINER_BASE_MODEL = "sd15/anything-v5.safetensors"
    settings.TOWER_TRAINING_MIN_IMAGES = 10
    settings.TOWER_TRAINING_GPUS = ["0"]
    settings.TOWER_COMFYUI_LORA_DIR = ""

    def configure(*extra: str) -> None:
        settings.TOWER_TRAINER_COMMAND = fake_command(*extra)

    return configure


@pytest.fixture
def ready_character(project):
    character = CharacterFactory(project=project, name="Kai", slug="kai", trigger_word="kaiSTY")
    add_images(character, 10)
    return character


def run_in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list]:
    result: list = []

    def body() -> None:
        from django.db import connection

        try:
            result.append(target())
        finally:
            connection.close()

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, result
