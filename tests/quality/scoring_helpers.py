"""Shared set-up for scoring tests: tiny models as the installation's, a job run on the fake ComfyUI,
generation's broker connection on the test Redis.

The fixtures are re-exported by ``tests/quality/conftest.py``."""

from __future__ import annotations

import io
import shutil
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django_q.brokers import Broker, get_broker
from PIL import Image

from generation import tasks
from generation.services.submit import jobs_create
from quality.metrics import MetricModels, clear_cache
from quality.services import common
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import Enqueued, backend_for, shipped
from tests.quality.tiny_models import tiny_models

SMALL = {"width": 64, "height": 64}


class Announced:
    """Stands in for django-q's push (``generation.tasks.async_task``): records (task, *args)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, path: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((path, *args))

    def take(self) -> list[tuple[Any, ...]]:
        calls, self.calls = self.calls, []
        return calls


@pytest.fixture
def broker(monkeypatch, settings, redis_url) -> Iterator[Broker]:
    """generation's broker, connected to the test Redis (embedded, or CI's), keys under a prefix of
    this test's own. Pushing tasks is still up to ``engine`` (nothing runs them)."""
    settings.REDIS_PREFIX = f"test-{uuid.uuid4().hex[:8]}"
    real = get_broker()
    real.connection = redis.Redis.from_url(redis_url)
    monkeypatch.setattr(tasks, "_broker", lambda: real)
    yield real
    real.connection.close()


@pytest.fixture
def models(monkeypatch) -> MetricModels:
    built = tiny_models()
    monkeypatch.setattr(common, "metric_models", lambda: built)
    return built


@pytest.fixture
def models_without(monkeypatch, tmp_path):
    """Tiny models with some files removed: ``models_without(weights.ALEXNET, …)``."""

    def make(*roles: tuple[str, str]) -> MetricModels:
        built = tiny_models()
        root = tmp_path / "models"
        shutil.copytree(built.root, root)
        for role in roles:
            (root / role[1]).unlink()
        copy = MetricModels(root=root, clip_arch=built.clip_arch, device="cpu")
        monkeypatch.setattr(common, "metric_models", lambda: copy)
        return copy

    yield make
    clear_cache()  # the copies' models must not linger in the process-wide cache


@pytest.fixture
def engine(monkeypatch, settings, broker) -> tuple[Enqueued, Announced]:
    settings.TOWER_ON_JOB_SUCCEEDED = ["quality.tasks.job_succeeded"]
    runs = Enqueued()
    announced = Announced()
    monkeypatch.setattr(tasks, "enqueue_run", runs)
    monkeypatch.setattr(tasks, "enqueue_abort", lambda job_id: None)
    monkeypatch.setattr(tasks, "async_task", announced)
    return runs, announced


@pytest.fixture
def fake(tmp_path):
    with FakeComfy(root=tmp_path / "comfy", checkpoints=["anime_v1.safetensors"]) as server:
        backend_for(server)
        yield server


def submit(project, user, slug: str = "weightless-image", **kw: Any):
    overrides = {**SMALL, **kw.pop("overrides", {})}
    [job] = jobs_create(user=user, project=project, template=shipped(slug), overrides=overrides, **kw)
    return job


def closed_port() -> int:
    """A local port nothing listens on: a Redis there is a Redis that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def png(colour: tuple[int, int, int] = (200, 40, 40), size: int = 128, square: int = 0) -> bytes:
    """A PNG; with ``square``, a bright square (a "face" to the tiny detector) on black."""
    image = Image.new("RGB", (size, size), (0, 0, 0) if square else colour)
    if square:
        image.paste(Image.new("RGB", (square, square), colour), (size // 3, size // 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def listen(layer: Any, group: str) -> str:
    from asgiref.sync import async_to_sync

    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def wait_for_event(layer: Any, channel: str, event_type: str, timeout: float = 5.0) -> dict[str, Any]:
    """The first event of ``event_type`` on ``channel`` (others are skipped); fails after ``timeout``."""
    import asyncio

    from asgiref.sync import async_to_sync

    async def receive() -> dict[str, Any]:
        while True:
            message = await layer.receive(channel)
            if message["event"]["type"] == event_type:
                return message["event"]

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(receive(), timeout)

    return async_to_sync(bounded)()
