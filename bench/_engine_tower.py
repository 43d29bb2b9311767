"""The engine benchmark's side of Tower: jobs created as producers create them, the graphs they ran, their scores
and who used the CPU."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from typing import Any

from bench._common import (
    EventRecorder,
    FakeProcess,
    TowerEnvironment,
    _proc_stat,
    median,
    wait_until,
)
from bench._engine_direct import server_times

SMALL = {"width": 64, "height": 64}


class Bench:
    def __init__(
        self, env: TowerEnvironment, recorder: EventRecorder, owner: Any, project: Any, fakes: list[FakeProcess]
    ) -> None:
        self.env, self.recorder, self.owner, self.project, self.fakes = env, recorder, owner, project, fakes
        self.seed = random.randrange(1, 2**40)
        self.created_after = 0.0

    def next_seeds(self, n: int) -> list[int]:
        seeds = list(range(self.seed, self.seed + n))
        self.seed += n
        return seeds

    def create(self, template: Any, n: int, **overrides: Any) -> list[int]:
        from generation.services.submit import MAX_JOBS_PER_REQUEST, jobs_create

        ids: list[int] = []
        while len(ids) < n:
            take = min(MAX_JOBS_PER_REQUEST, n - len(ids))
            jobs = jobs_create(
                user=self.owner,
                project=self.project,
                template=template,
                # A prompt, so its colour binding is set the same way when graphs_like rebuilds it.
                prompt="bench",
                overrides={**SMALL, **overrides},
                seeds=self.next_seeds(take),
            )
            ids += [j.pk for j in jobs]
        return ids

    def run_jobs(self, template: Any, n: int, timeout: float = 120, **overrides: Any) -> tuple[list[int], float]:
        """Create n jobs at once; seconds from the request to the last job_complete event."""
        started = time.time()
        ids = self.create(template, n, **overrides)
        self.created_after = time.time() - started  # the request's own time (its commit included)
        ends = self.recorder.wait_ended(set(ids), timeout)
        failed = [job for job, (kind, _) in ends.items() if kind != "job_complete"]
        if failed:
            raise RuntimeError(f"jobs {failed} did not succeed (log: {self.env.log_path})")
        return ids, max(at for _, at in ends.values()) - started

    def sequential(self, template: Any, n: int, url: str) -> list[dict[str, float]]:
        from generation.models import Job

        records = []
        for _ in range(n):
            request = time.time()
            [job_id] = self.create(template, 1)
            created = time.time()
            [(kind, arrived)] = self.recorder.wait_ended({job_id}, 30).values()
            assert kind == "job_complete", kind
            prompt_id, claimed = Job.objects.values_list("prompt_id", "submitted_at").get(pk=job_id)
            start, end = asyncio.run(server_times(url, [prompt_id]))[prompt_id]
            records.append(
                {
                    "submit": start - request,
                    "complete": arrived - end,
                    "create": created - request,
                    "pickup": claimed.timestamp() - created,
                    "post": start - claimed.timestamp(),
                }
            )
        print(
            "submit latency parts (median ms): "
            + ", ".join(f"{k} {1000 * median([r[k] for r in records]):.1f}" for k in ("create", "pickup", "post")),
            file=sys.stderr,
        )
        return records


def graphs_like(job_id: int, seeds: list[int]) -> list[dict[str, Any]]:
    """The graph Tower built for the job, built again for other seeds: the direct client gives the
    server exactly the work Tower gives it. (A template may bind the seed to more than a sampler's
    ``seed``: the weightless one also colours a node from it, so changing only ``seed`` inputs
    let the server answer two of five nodes from its cache and made the direct client's prompts
    cheaper than Tower's.)"""
    from generation.models import Job
    from generation.workflow import apply
    from generation.workflow.bindings import PARAMETERS

    job = Job.objects.select_related("template").get(pk=job_id)
    params = {k: v for k, v in job.params.items() if k in PARAMETERS and v is not None}
    params.update(prompt=job.prompt, negative=job.negative_prompt)
    template = job.template

    def build(seed: int) -> dict[str, Any]:
        return apply(template.graph, template.bindings, {**params, "seed": seed}).graph

    if build(job.seed) != job.graph:
        raise RuntimeError(f"job {job_id}'s graph cannot be rebuilt from its template and parameters")
    return [build(s) for s in seeds]


def wait_scored(ids: list[int], timeout: float) -> float:
    """Wait until every job has its post-generation quality gate; returns when (time.time())."""
    from quality.models import QualityGate

    def scored() -> bool:
        return QualityGate.objects.filter(job__in=ids, stage="post_gen").values("job").distinct().count() == len(ids)

    wait_until(scored, timeout=timeout, what="the jobs' scores", interval=0.05)
    return time.time()


def cpu_groups(bench: Bench, fakes: list[FakeProcess]) -> dict[str, Any]:
    """Who used the CPU: Tower's workers, the fake ComfyUI servers given, Redis, this process (a real
    ComfyUI's process is not ours to read: its group is left out rather than shown as 0)."""
    cluster = bench.env.cluster.pid if bench.env.cluster else -1
    fake_pids = {f.process.pid for f in fakes}
    redis = bench.env.redis.process.pid if bench.env.redis and bench.env.redis.process else -1
    me = os.getpid()
    groups = {
        "workers": lambda pid, ppid, pgrp: pgrp == cluster,
        "ComfyUI": lambda pid, ppid, pgrp: pid in fake_pids,
        "Redis": lambda pid, ppid, pgrp: pid == redis,
        "web/bench": lambda pid, ppid, pgrp: pid == me,
    }
    if not fake_pids:
        del groups["ComfyUI"]
    postmaster = _local_postmaster()
    if postmaster is not None:
        # With DATABASE_URL on this machine, the server's CPU is part of what a job costs: every
        # PostgreSQL process (the postmaster and its children; a backend that exits is not counted).
        groups["PostgreSQL"] = lambda pid, ppid, pgrp: postmaster in (pid, ppid)
    return groups


def _local_postmaster() -> int | None:
    """The pid of the PostgreSQL server Tower uses, when it runs on this machine (else None)."""
    from django.db import connection

    local = ("127.0.0.1", "localhost", "::1", "")
    if connection.vendor != "postgresql" or connection.settings_dict.get("HOST") not in local:
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend,) = cursor.fetchone()
    stat = _proc_stat(backend)  # None: a server in a container, out of this machine's /proc
    return None if stat is None else stat[0]  # a backend's parent is the postmaster
