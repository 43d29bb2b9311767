"""Progress never goes stale: a throttled update is written once the interval has passed."""

from __future__ import annotations

import itertools
import time

import pytest

from generation import tasks
from generation.engine import driver
from generation.models import JobStatus
from generation.services import completion
from generation.services.submit import jobs_create
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, job, run_in_thread, shipped
from tests.support.processes import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("channel_layer")]

INTERVAL = 0.5  # wide enough that the fast nodes surely all finish inside one throttle window


@pytest.fixture
def writes(monkeypatch) -> list[tuple[float, float]]:
    """(monotonic time, fraction) of every progress write the engine makes."""
    recorded: list[tuple[float, float]] = []
    real = completion.job_progress

    def recording(**kwargs):
        recorded.append((time.monotonic(), kwargs["fraction"]))
        return real(**kwargs)

    monkeypatch.setattr(completion, "job_progress", recording)
    monkeypatch.setattr(driver, "PROGRESS_WRITE_INTERVAL", INTERVAL)
    return recorded


def test_fast_nodes_then_a_long_one_show_the_fast_nodes_done(owner, enqueued, writes, tmp_path):
    with FakeComfy(root=tmp_path / "comfy", checkpoints=["anime_v1.safetensors"]) as fake:
        backend_for(fake)
        # Three fast nodes, then the noise node runs long (held until released).
        fake.configure(delays={"EmptyImage": 0.01, "ImageBlend": 0.01}, holds={"ImageAddNoise"})
        [created] = jobs_create(
            user=owner,
            project=make_project(owner),
            template=shipped("weightless-image"),
            overrides={"width": 64, "height": 64},
        )
        thread, result = run_in_thread(lambda: tasks.job_run(created.pk))
        fake.wait_for(lambda: fake.held_nodes(), what="the job to reach its long node")
        held_at = time.monotonic()

        running = wait_until(
            lambda: (j := job(created.pk)).progress >= 0.6 and j,
            timeout=INTERVAL * 6,
            what="the progress of the three finished nodes to reach the database",
        )
        # 3 of 5 nodes done, the long one named, while it is still running.
        assert running.status == JobStatus.RUNNING
        assert running.progress == pytest.approx(0.6)
        assert "ImageAddNoise" in running.current_node or "#4" in running.current_node
        assert fake.held_nodes()
        assert writes[-1][0] - held_at <= INTERVAL + 1.0  # the trailing write, not a heartbeat

        fake.release()
        thread.join(timeout=20)
    assert result == ["succeeded"]
    assert job(created.pk).progress == 1.0
    # Writes stay bounded: never two within the interval.
    times = [t for t, _ in writes]
    assert all(b - a >= INTERVAL * 0.95 for a, b in itertools.pairwise(times)), times


def test_no_trailing_write_when_nothing_was_skipped(owner, enqueued, writes, tmp_path):
    with FakeComfy(root=tmp_path / "comfy", checkpoints=["anime_v1.safetensors"]) as fake:
        backend_for(fake)
        # Every node takes longer than the interval: each event is written at once.
        fake.configure(node_delay=INTERVAL * 1.3)
        [created] = jobs_create(
            user=owner,
            project=make_project(owner),
            template=shipped("weightless-image"),
            overrides={"width": 64, "height": 64},
        )
        assert tasks.job_run(created.pk) == "succeeded"
    fractions = [f for _, f in writes]
    assert fractions == sorted(fractions)  # never a stale value after a newer one
    assert len(writes) <= 6  # one per event (cached list and five nodes), no extra flushes
