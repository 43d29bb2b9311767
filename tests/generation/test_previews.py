"""Live preview frames: the latest sampler frame is on disk while a job runs, announced in progress."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from generation import tasks
from generation.events import job_group
from generation.models import JobStatus
from generation.services.submit import jobs_create
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, job, run_in_thread, shipped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _events(layer, channel: str) -> list[dict]:
    received = []

    async def drain() -> None:
        import asyncio

        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 2)
            except TimeoutError:
                return
            received.append(message["event"])
            if message["event"]["type"] in ("job_complete", "job_failed", "job_cancelled"):
                return

    async_to_sync(drain)()
    return received


def test_a_running_job_shows_its_latest_frame_and_the_file_goes_when_it_ends(
    tmp_path, owner, channel_layer, monkeypatch
):
    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)
    with FakeComfy(
        root=tmp_path / "comfy",
        checkpoints=["anime_v1.safetensors"],
        sampler_previews=True,
        delays={"KSampler": 2.0},
    ) as fake:
        backend_for(fake)
        [created] = jobs_create(
            user=owner,
            project=make_project(owner),
            template=shipped("txt2img-sd15"),
            overrides={"width": 64, "height": 64, "checkpoint": "anime_v1.safetensors", "steps": 12},
        )
        channel = async_to_sync(channel_layer.new_channel)()
        async_to_sync(channel_layer.group_add)(job_group(created.pk), channel)

        thread, result = run_in_thread(lambda: tasks.job_run(created.pk))
        previews = Path(settings.MEDIA_ROOT) / "previews"
        seen: set[str] = set()
        deadline = time.monotonic() + 20
        while thread.is_alive() and time.monotonic() < deadline:
            seen.update(p.name for p in previews.glob("job-*") if not p.name.startswith("."))
            time.sleep(0.02)
        thread.join(timeout=20)

    assert result == ["succeeded"]
    assert seen == {f"job-{created.pk}.png"}  # the fake's sampler frames are PNGs
    assert not list(previews.glob(f"job-{created.pk}.*"))  # gone once the outputs exist
    assert job(created.pk).status == JobStatus.SUCCEEDED

    events = _events(channel_layer, channel)
    urls = [e["preview"] for e in events if e["type"] == "progress" and e.get("preview")]
    assert urls, [e["type"] for e in events]
    prefix = f"{settings.MEDIA_URL}previews/job-{created.pk}.png?v="
    assert all(u.startswith(prefix) for u in urls)
    counters = [int(u.removeprefix(prefix)) for u in urls]
    assert counters == sorted(counters) and counters[-1] >= 2, events  # a new URL for every new frame
    # Throttled: 12 frames came in 2 s, at most about two a second were written.
    assert counters[-1] <= 5
    assert events[-1]["type"] == "job_complete"
