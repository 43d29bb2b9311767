"""A real django-q2 cluster drives a job; its worker is killed with SIGKILL mid-job.

The job must complete exactly once: adopted by the replacement worker (django-q2 restarts it and
Tower reconciles on spawn), never submitted to ComfyUI twice, its outputs stored once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from generation.models import Asset, Job, JobStatus
from generation.services.submit import jobs_create
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, shipped

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


def wait_until(condition: Callable[[], object], *, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def cluster(redis_url, tmp_path):
    """Start ``manage.py qcluster`` (2 workers) against the test database and Redis."""
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY_FILE"}}
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=redis_url,
        REDIS_PREFIX=f"recovery-{uuid.uuid4().hex[:8]}",
        SECRET_KEY=settings.SECRET_KEY,
        TOWER_VAR_DIR=str(tmp_path / "var"),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        TOWER_WORKERS="2",
        TOWER_HEARTBEAT_STALE_SECONDS="30",
        COMFYUI_STALL_TIMEOUT="1",
        LOG_LEVEL="INFO",
    )
    log_path = tmp_path / "qcluster.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_worker_killed_mid_job_the_job_completes_exactly_once(owner, tmp_path, cluster):
    with FakeComfy(root=tmp_path / "comfy", holds={"ImageAddNoise"}) as fake:
        backend_for(fake)
        project = make_project(owner)
        [job] = jobs_create(
            user=owner,
            project=project,
            template=shipped("weightless-image"),
            overrides={"width": 64, "height": 64, "batch_size": 2},
        )
        # Nothing enqueued it (no broker in this process): the cluster's reconcile on start must.
        running = wait_until(
            lambda: (
                Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exclude(worker="").first() and fake.held_nodes()
            ),
            timeout=60,
            what=f"the cluster to start the job (log: {cluster.log_path})",
        )
        assert running
        owner_pid = int(Job.objects.get(pk=job.pk).worker.rsplit(":", 1)[1])
        assert owner_pid != cluster.pid
        os.kill(owner_pid, signal.SIGKILL)
        killed_at = time.monotonic()

        adopted = wait_until(
            lambda: (w := Job.objects.get(pk=job.pk).worker) and w != f"{w.rsplit(':', 1)[0]}:{owner_pid}",
            timeout=60,
            what="a new worker to adopt the orphaned job",
        )
        assert adopted
        adoption_seconds = time.monotonic() - killed_at
        fake.release()
        wait_until(
            lambda: Job.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED,
            timeout=60,
            what=f"the adopted job to finish (log: {cluster.log_path})",
        )
        done = Job.objects.get(pk=job.pk)
        assert fake.counters.prompts_received == 1  # never submitted twice
        assert done.attempts == 1
        assert Asset.objects.filter(job=done).count() == 2  # outputs stored once
        assert any("adopted by" in m for m in done.log_lines.values_list("message", flat=True))
        # The owner-less window is bounded by the guard's restart and one reconcile, not by the schedule.
        assert adoption_seconds < 60
