"""Two worker machines: two ``manage.py qcluster`` processes, each with its own worker identity
(``TOWER_WORKER_HOST``), on one database and one Redis, sharing 4 ComfyUI backends.

500 jobs: every one succeeds, none is executed twice (each fake records the prompts it received,
by prompt id and seed), both machines do work. Halfway, one machine's cluster is SIGKILLed (its
whole process group, as a machine that loses power): the other machine cannot see its processes,
so it adopts the dead machine's live jobs once their heartbeat is stale (reconcile, on the
schedule) and finishes them without submitting any prompt again.

On PostgreSQL and real Redis when DATABASE_URL / REDIS_URL are set, else on the embedded default
(SQLite in WAL mode and the embedded Redis), the same way.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django_q.models import Schedule

from generation import tasks
from generation.models import Asset, Job, JobStatus
from generation.services.submit import MAX_JOBS_PER_REQUEST, jobs_create
from tests.factories import make_project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for, shipped
from tests.support.processes import QCluster, start_qcluster, wait_until, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
JOBS = 500
BACKENDS = 4
STALE_SECONDS = 10  # the engine beats every 5 s; a live worker never looks stale
MACHINES = ("machine-a", "machine-b")
LIVE = (JobStatus.SUBMITTED, JobStatus.RUNNING)


class Machine:
    """One worker machine: a qcluster in its own process group, named by TOWER_WORKER_HOST."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.cluster: QCluster = start_qcluster(env={**env, "TOWER_WORKER_HOST": name}, log_path=log_path)
        self.log_path = log_path

    def live_jobs(self) -> set[int]:
        """Jobs this machine drives now (a job's worker is cleared when it ends)."""
        return set(Job.objects.filter(worker__startswith=f"{self.name}:", status__in=LIVE).values_list("pk", flat=True))

    def kill(self) -> None:
        """Power lost: every process of the machine's cluster dies at once, nothing cleans up."""
        os.killpg(self.cluster.pid, signal.SIGKILL)
        self.cluster.process.wait()


@pytest.fixture
def fakes(tmp_path) -> Iterator[list[FakeComfy]]:
    # A few tens of milliseconds a prompt: jobs overlap, so a kill always finds some in flight.
    started = [FakeComfy(root=tmp_path / f"comfy-{i}", node_delay=0.03).start() for i in range(BACKENDS)]
    try:
        yield started
    finally:
        for fake in started:
            fake.stop()


@pytest.fixture
def start_machines(redis_url, tmp_path) -> Iterator[Callable[[], tuple[Machine, Machine]]]:
    env = worker_env(
        settings_dict=connection.settings_dict,
        redis_url=redis_url,
        prefix=f"two-clusters-{uuid.uuid4().hex[:8]}",  # one queue, shared by both machines
        secret_key=settings.SECRET_KEY,
        media_root=settings.MEDIA_ROOT,  # the shared media storage
        TOWER_WORKERS="3",
        TOWER_HEARTBEAT_STALE_SECONDS=str(STALE_SECONDS),
        COMFYUI_STALL_TIMEOUT="1",
        LOG_LEVEL="INFO",
    )
    started: list[Machine] = []

    def start() -> tuple[Machine, Machine]:
        for name in MACHINES:
            var = tmp_path / f"var-{name}"  # each machine's own state; database and media are shared
            var.mkdir()
            started.append(Machine(name, {**env, "TOWER_VAR_DIR": str(var)}, tmp_path / f"{name}.log"))
        return started[0], started[1]

    try:
        yield start
    finally:
        for machine in started:
            machine.cluster.stop()


def queue_jobs(owner, monkeypatch) -> list[int]:
    # Nothing in this process reaches the machines' broker: the jobs wait queued in the database
    # and the machines' reconcile on start dispatches them (as after a broker outage).
    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)
    project = make_project(owner)
    template = shipped("weightless-image")
    ids: list[int] = []
    seeds = list(range(1, JOBS + 1))
    for start in range(0, JOBS, MAX_JOBS_PER_REQUEST):
        created = jobs_create(
            user=owner,
            project=project,
            template=template,
            overrides={"width": 64, "height": 64},
            seeds=seeds[start : start + MAX_JOBS_PER_REQUEST],
        )
        ids += [job.pk for job in created]
    return ids


def executed(fakes: list[FakeComfy]) -> tuple[Counter[str], Counter[int]]:
    """(prompt id → times run, seed → times run) over every backend's history."""
    prompt_ids: Counter[str] = Counter()
    seeds: Counter[int] = Counter()
    for fake in fakes:
        for prompt_id, entry in fake.history.items():
            prompt_ids[prompt_id] += 1
            graph = entry["prompt"][2]
            seeds.update(node["inputs"]["seed"] for node in graph.values() if "seed" in node["inputs"])
    return prompt_ids, seeds


def test_two_machines_share_500_jobs_and_one_adopts_the_other_s_after_a_kill(owner, fakes, start_machines, monkeypatch):
    for i, fake in enumerate(fakes):
        backend_for(fake, name=f"gpu-{i + 1}")
    job_ids = queue_jobs(owner, monkeypatch)
    assert len(job_ids) == JOBS
    # The once-a-minute reconcile (a data migration made it; a transactional test before may have
    # emptied the table).
    Schedule.objects.update_or_create(
        func="generation.tasks.reconcile_all",
        defaults={
            "name": "tower: reconcile ComfyUI jobs and backends",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )
    doomed, survivor = start_machines()
    driven: dict[str, set[int]] = {doomed.name: set(), survivor.name: set()}

    def succeeded() -> int:
        return Job.objects.filter(status=JobStatus.SUCCEEDED).count()

    def halfway() -> bool:
        for machine in (doomed, survivor):
            driven[machine.name] |= machine.live_jobs()
        done = set(Job.objects.filter(status=JobStatus.SUCCEEDED).values_list("pk", flat=True))
        both_finished_some = all(ids & done for ids in driven.values())
        return len(done) >= JOBS // 2 and both_finished_some and bool(doomed.live_jobs())

    # Halfway, with both machines having finished jobs and the doomed one driving some right now.
    wait_until(
        halfway,
        timeout=120,
        interval=0.2,
        what=f"half the jobs done, by both machines (logs: {doomed.log_path}, {survivor.log_path})",
    )
    doomed.kill()
    orphans = doomed.live_jobs()
    assert orphans, "the killed machine was driving no job"

    wait_until(
        lambda: (
            succeeded() == JOBS
            or Job.objects.exclude(status__in=[*LIVE, JobStatus.QUEUED, JobStatus.SUCCEEDED]).exists()
        ),
        timeout=150,
        interval=0.5,
        what=f"every job to finish on the surviving machine (log: {survivor.log_path})",
    )
    statuses = Counter(Job.objects.values_list("status", flat=True))
    assert statuses == {JobStatus.SUCCEEDED: JOBS}

    # None executed twice, none lost: each job's prompt ran once, on one backend, with its own seed.
    prompt_ids, seeds = executed(fakes)
    assert sum(fake.counters.prompts_received for fake in fakes) == JOBS
    assert set(prompt_ids) == set(Job.objects.values_list("prompt_id", flat=True))
    assert set(prompt_ids.values()) == {1}
    assert seeds == Counter(range(1, JOBS + 1))
    # A job the killed machine had claimed but not yet sent is found missing on the server by its
    # adopter and sent then: a second attempt on Tower's count, still one prompt on ComfyUI (above).
    attempts = dict(Job.objects.values_list("pk", "attempts"))
    assert set(attempts.values()) <= {1, 2}
    assert {pk for pk, n in attempts.items() if n != 1} <= set(orphans)
    assert Asset.objects.count() == JOBS  # outputs stored once

    # The survivor adopted every job the dead machine left in flight.
    for job in Job.objects.filter(pk__in=orphans):
        messages = list(job.log_lines.values_list("message", flat=True))
        assert any(m.startswith(f"adopted by {survivor.name}:") for m in messages), messages
