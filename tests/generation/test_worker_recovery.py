"""A real django-q2 cluster drives a job; its worker is killed with SIGKILL mid-job.

The job must complete exactly once: adopted by the replacement worker (django-q2 restarts it and
Tower reconciles on spawn), never submitted to ComfyUI twice, its outputs stored once.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from django.conf import settings
from django.db import connection

from generation.models import Asset, Job, JobStatus
from generation.services.submit import jobs_create
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, shipped
from tests.support.processes import running_qcluster, wait_until, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def cluster(redis_url, tmp_path):
    """Start ``manage.py qcluster`` (2 workers) against the test database and Redis."""
    env = worker_env(
        settings_dict=connection.settings_dict,
        redis_url=redis_url,
        prefix=f"recovery-{uuid.uuid4().hex[:8]}",
        secret_key=settings.SECRET_KEY,
        media_root=settings.MEDIA_ROOT,
        var_dir=tmp_path / "var",
        TOWER_WORKERS="2",
        TOWER_HEARTBEAT_STALE_SECONDS="30",
        COMFYUI_STALL_TIMEOUT="1",
        LOG_LEVEL="INFO",
    )
    with running_qcluster(env=env, log_path=tmp_path / "qcluster.log") as cluster:
        yield cluster


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
