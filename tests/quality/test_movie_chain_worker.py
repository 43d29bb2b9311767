"""A real django-q2 cluster chains a scene; the worker running its first segment is killed with SIGKILL.

The chain must not be lost: the replacement worker adopts the job, scoring steps the scene, and the
second segment starts from the first one's last frame — each job submitted to ComfyUI once.
"""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from django.conf import settings
from django.db import connection

from generation.models import Job, JobStatus
from quality.models import SceneRun, Segment
from quality.movie.chain import scene_generate
from quality.movie.plan import segment_length
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, shipped
from tests.quality.movie_chain_helpers import SEGMENT, cast, movie_project, scene_with
from tests.support.processes import running_qcluster, wait_until, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def cluster(redis_url, tmp_path):
    env = worker_env(
        settings_dict=connection.settings_dict,
        redis_url=redis_url,
        prefix=f"movie-{uuid.uuid4().hex[:8]}",
        secret_key=settings.SECRET_KEY,
        media_root=settings.MEDIA_ROOT,
        var_dir=tmp_path / "var",
        TOWER_WORKERS="2",
        TOWER_HEARTBEAT_STALE_SECONDS="30",
        TOWER_FETCH_MODELS="false",
        LOG_LEVEL="INFO",
    )
    with running_qcluster(env=env, log_path=tmp_path / "qcluster.log") as cluster:
        yield cluster


def test_a_worker_killed_mid_scene_does_not_lose_the_chain(owner, tmp_path, cluster):
    with FakeComfy(root=tmp_path / "comfy", holds={"ImageAddNoise"}) as fake:
        backend_for(fake)
        project = movie_project(owner)
        kai = cast(project, owner)
        frames, fps = segment_length(template=shipped(SEGMENT), project=project)
        scene = scene_with(project, [kai], duration=(2 * frames - 1) / fps)
        run = scene_generate(scene=scene, user=owner, template=SEGMENT)
        first = Segment.objects.get(run=run, number=1)
        wait_until(
            lambda: (
                Job.objects.filter(pk=first.job_id, status=JobStatus.RUNNING).exclude(worker="").exists()
                and fake.held_nodes()
            ),
            timeout=90,
            what=f"the cluster to run segment 1 (log: {cluster.log_path})",
        )
        owner_pid = int(Job.objects.get(pk=first.job_id).worker.rsplit(":", 1)[1])
        assert owner_pid != cluster.pid
        os.kill(owner_pid, signal.SIGKILL)

        def finished() -> bool:
            fake.release()  # every prompt's noise node waits for a release
            return SceneRun.objects.get(pk=run.pk).status != "running"

        wait_until(finished, timeout=240, interval=0.2, what=f"the scene to finish (log: {cluster.log_path})")

        run.refresh_from_db()
        assert run.status == "complete", run.reasons
        first, second = Segment.objects.filter(run=run).order_by("number")
        assert (first.attempts, second.attempts) == (1, 1)
        assert second.first_frame_id == first.last_frame_id is not None
        assert fake.counters.prompts_received == 2  # each segment's job submitted once
        messages = list(Job.objects.get(pk=first.job_id).log_lines.values_list("message", flat=True))
        assert any("adopted by" in m for m in messages)  # the killed worker's job, taken over
        scene.refresh_from_db()
        assert scene.status == "complete"
