"""Engine benchmark (issue 3): Tower's real workers against a minimal direct ComfyUI client.

python bench/engine.py [--jobs N] [--pairs P] [--workers W] [--comfyui URL ...]

Sets up its own environment (temporary SQLite in WAL mode or DATABASE_URL, embedded Redis or
REDIS_URL, one fake ComfyUI process per backend, ``manage.py qcluster`` workers), then measures,
in one run: throughput with 50 ms and 200 ms of compute per job and with none, added submit latency, the
GPU idle gap between consecutive jobs, model loads with checkpoint affinity against round-robin,
and the delay from ComfyUI's end of a prompt to Tower's ``job_complete`` event. The zero-compute
row, short and sensitive to this machine's noise, is measured as ``--pairs`` Tower/direct pairs
and judged on the median pair. Prints one table and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import (
    EventRecorder,
    FakeProcess,
    Row,
    TowerEnvironment,
    cpu_seconds,
    exit_on_sigterm,
    median,
    print_table,
    shipped,
)
from bench._engine_direct import direct_pipelined, direct_sequential, server_times
from bench._engine_tower import Bench, cpu_groups, graphs_like, wait_scored

# Seconds of "GPU" work per job in the compute rows and Tower's target against the direct client:
# 50 ms is a turbo or LCM model on a fast GPU, 200 ms a small SD 1.5 image.
COMPUTE_ROWS = ((0.05, 0.95), (0.2, 0.98))
# Zero compute is reported with a floor, not optimised for: no producer's GPU job takes 0 ms.
ZERO_COMPUTE_FLOOR = 0.4
CHECKPOINTS = ["alpha.safetensors", "beta.safetensors"]
MAX_IN_FLIGHT = 2
ROW_NAMES = ("50ms", "200ms", "gap", "zero", "latency", "affinity")


# --- Tower as producers run it ----------------------------------------------------------------


def _tower_run(bench: Bench, template: Any, url: str, jobs: int, label: str) -> dict[str, Any]:
    """One Tower run of ``jobs`` jobs: its seconds, when the first prompt ran, CPU per job."""
    groups = cpu_groups(bench, [f for f in bench.fakes if f.url == url])
    before = cpu_seconds(groups)
    started = time.time()
    ids, seconds = bench.run_jobs(template, jobs)
    in_run = cpu_seconds(groups)
    # Work that follows each job is part of its cost: CPU is read again once every job has its scores.
    scored_after = wait_scored(ids, timeout=60) - (started + seconds)
    time.sleep(0.2)
    after = cpu_seconds(groups)
    from generation.models import Job

    prompts = list(Job.objects.filter(pk__in=ids).values_list("prompt_id", flat=True))
    stamps = asyncio.run(server_times(url, prompts)).values()
    first_start, last_end = min(s for s, _ in stamps), max(e for _, e in stamps)
    first_claim = min(Job.objects.filter(pk__in=ids).values_list("submitted_at", flat=True)).timestamp()
    print(
        f"{label}: request → created {1000 * bench.created_after:.0f} ms → first claim "
        f"{1000 * (first_claim - started):.0f} ms → first prompt running {1000 * (first_start - started):.0f} ms, "
        f"server busy {last_end - first_start:.2f} s, last end → last event "
        f"{1000 * (started + seconds - last_end):.0f} ms",
        file=sys.stderr,
    )
    return {
        "ids": ids,
        "seconds": seconds,
        "first": first_start - started,
        "cpu_ms": {name: 1000 * (after[name] - before[name]) / jobs for name in groups},
        "cpu_ms_run": {name: 1000 * (in_run[name] - before[name]) / jobs for name in groups},
        "cores_busy": sum(in_run[name] - before[name] for name in groups) / seconds,
        "scored_after": scored_after,
    }


def throughput_rows(
    bench: Bench, template: Any, url: str, jobs: int, label: str, *, target: float, pairs: int = 1
) -> list[Row]:
    """Tower and the pipelined direct client on one backend, same graphs, same server.

    With ``pairs`` > 1 the two are measured that many times, back to back, in alternating order
    (the server's growing history then weighs on both alike); the row shows the pair with the
    median ratio, and the lowest and highest ratios follow it."""

    def direct(job_id: int) -> float:
        """The direct client on graphs like the given Tower job's, for fresh seeds."""
        return asyncio.run(direct_pipelined(url, graphs_like(job_id, bench.next_seeds(jobs))))

    runs: list[tuple[dict[str, Any], float]] = []
    for i in range(pairs):
        if i % 2:
            direct_seconds = direct(runs[0][0]["ids"][0])
            tower = _tower_run(bench, template, url, jobs, label)
        else:
            tower = _tower_run(bench, template, url, jobs, label)
            direct_seconds = direct(tower["ids"][0])
        runs.append((tower, direct_seconds))
        print(
            f"{label}, pair {i + 1}: Tower {jobs / tower['seconds']:.1f} jobs/s, direct "
            f"{jobs / direct_seconds:.1f}, ratio {direct_seconds / tower['seconds']:.2f}",
            file=sys.stderr,
        )
    ratios = sorted(direct / tower["seconds"] for tower, direct in runs)
    tower, direct_seconds = sorted(runs, key=lambda r: r[1] / r[0]["seconds"])[len(runs) // 2]
    tower_rate, direct_rate = jobs / tower["seconds"], jobs / direct_seconds
    engine = jobs / (tower["seconds"] - tower["first"])
    title = f"throughput, {label}" + (f" (median of {pairs} pairs)" if pairs > 1 else "")
    spread = [
        Row(f"  ratio, lowest of the {pairs} pairs", ratios[0], None, "×"),
        Row(f"  ratio, highest of the {pairs} pairs", ratios[-1], None, "×"),
    ]
    return [
        Row(title, tower_rate, direct_rate, "jobs/s", f"≥ {target}× direct", tower_rate / direct_rate >= target),
        *(spread if pairs > 1 else []),
        Row("  request → first prompt running (the batch request)", 1000 * tower["first"], None, "ms"),
        Row("  throughput from the first prompt running", engine, direct_rate, "jobs/s"),
        *(
            Row(f"  CPU per job: {name} (until the last job_complete)", tower["cpu_ms_run"][name], None, "ms")
            for name in tower["cpu_ms"]
        ),
        Row(f"  cores busy until then (the processes above, of {os.cpu_count()})", tower["cores_busy"], None, ""),
        *(Row(f"  CPU per job: {name}, scoring included", ms, None, "ms") for name, ms in tower["cpu_ms"].items()),
        Row("  every job scored, after the last job_complete", 1000 * tower["scored_after"], None, "ms"),
    ]


def latency_rows(bench: Bench, template: Any, url: str, n: int, label: str) -> list[Row]:
    tower = bench.sequential(template, n, url)
    last = bench.create(template, 1)
    bench.recorder.wait_ended(set(last), 30)
    direct = asyncio.run(direct_sequential(url, graphs_like(last[0], bench.next_seeds(n))))
    times = asyncio.run(server_times(url, [str(r["prompt_id"]) for r in direct]))
    direct_submit = [times[str(r["prompt_id"])][0] - float(r["request"]) for r in direct]
    direct_post = [float(r["posted"]) - float(r["request"]) for r in direct]
    direct_complete = [float(r["have"]) - times[str(r["prompt_id"])][1] for r in direct]
    tower_submit = median([r["submit"] for r in tower]) * 1000
    added = tower_submit - median(direct_submit) * 1000
    return [
        Row(
            f"submit latency (request → running), {label}",
            tower_submit,
            median(direct_submit) * 1000,
            "ms",
            "added ≤ 50 ms",
            added <= 50,
        ),
        Row(f"  added by Tower (direct POST {median(direct_post) * 1000:.1f} ms)", added, None, "ms"),
        Row(
            f"end of prompt → job_complete event, {label}",
            median([r["complete"] for r in tower]) * 1000,
            median(direct_complete) * 1000,
            "ms",
        ),
    ]


def idle_gap_rows(bench: Bench, template: Any, fake: FakeProcess, jobs: int) -> list[Row]:
    fake.reset()
    ids, _ = bench.run_jobs(template, jobs)
    tower_gaps = fake.counters()["idle_gaps"]
    fake.reset()
    asyncio.run(direct_sequential(fake.url, graphs_like(ids[0], bench.next_seeds(max(4, jobs // 3)))))
    direct_gaps = fake.counters()["idle_gaps"]
    tower_ms, direct_ms = median(tower_gaps) * 1000, median(direct_gaps) * 1000
    p90 = sorted(tower_gaps)[int(len(tower_gaps) * 0.9)] if tower_gaps else float("nan")
    return [
        Row(
            "GPU idle gap between jobs (median)",
            tower_ms,
            direct_ms,
            "ms",
            "≤ 20 ms (vs submit-then-wait)",
            tower_ms <= 20,
        ),
        Row(
            "  GPU idle gap (p90)",
            p90 * 1000,
            None,
            "ms",
        ),
    ]


def affinity_rows(bench: Bench, fakes: list[FakeProcess], jobs: int) -> list[Row]:
    """Checkpoints in pairs (a a b b a a b b …): alternating assignment reloads on every job."""
    template = shipped("txt2img-sd15")
    order = [CHECKPOINTS[(i // 2) % 2] for i in range(jobs)]
    for fake in fakes:
        fake.configure(delays={"KSampler": 0.05})
        fake.reset()
    ids: list[int] = []
    started = time.time()
    for checkpoint in order:
        ids += bench.create(template, 1, checkpoint=checkpoint)
    ends = bench.recorder.wait_ended(set(ids), 120)
    assert all(kind == "job_complete" for kind, _ in ends.values()), ends
    tower_seconds = max(at for _, at in ends.values()) - started
    tower_loads = sum(sum(f.counters()["model_loads"].values()) for f in fakes)

    for fake in fakes:
        fake.reset()
    graphs = [graph for i, seed in zip(ids, bench.next_seeds(jobs), strict=True) for graph in graphs_like(i, [seed])]

    async def round_robin() -> float:
        began = time.perf_counter()
        await asyncio.gather(*(direct_pipelined(f.url, graphs[k :: len(fakes)]) for k, f in enumerate(fakes)))
        return time.perf_counter() - began

    rr_seconds = asyncio.run(round_robin())
    rr_loads = sum(sum(f.counters()["model_loads"].values()) for f in fakes)
    for fake in fakes:
        fake.configure(delays={})
    return [
        Row(
            f"model loads, {len(fakes)} backends × {len(CHECKPOINTS)} checkpoints, {jobs} jobs",
            tower_loads,
            rr_loads,
            "loads",
            "≤ 1/3 of round-robin",
            tower_loads * 3 <= rr_loads,
        ),
        Row("  wall time of that run", tower_seconds, rr_seconds, "s"),
    ]


# --- set-up -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # 60 jobs: about one full request (at most 64 per request). A 40-job zero-compute row lasts a
    # quarter of a second, and the batch request's own cost and this machine's noise decided it.
    parser.add_argument("--jobs", type=int, default=60, help="jobs per throughput row (default 60)")
    parser.add_argument(
        "--pairs", type=int, default=5, help="Tower/direct pairs in the zero-compute row, median shown (default 5)"
    )
    parser.add_argument("--workers", type=int, help="TOWER_WORKERS for the qcluster (default: Tower's default)")
    parser.add_argument("--comfyui", action="append", default=[], help="also measure against this real ComfyUI")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument(
        "--only",
        action="append",
        choices=ROW_NAMES,
        help="measure only these rows (repeatable; default: all)",
    )
    args = parser.parse_args()
    exit_on_sigterm()

    env = TowerEnvironment()
    fakes = [FakeProcess(env.tmp / f"comfy-{i}", checkpoints=CHECKPOINTS, model_load_delay=0.1) for i in range(2)]
    rows: list[Row] = []
    try:
        env.setup()
        for fake in fakes:
            fake.wait_ready()
        env.start_cluster(args.workers)
        rows = run(env, fakes, args)
    finally:
        env.stop_cluster()
        for fake in fakes:
            fake.stop()
        if args.keep:
            print(f"kept {env.tmp}")
        else:
            env.teardown()
    print_table(rows)
    return 0 if all(r.passed is not False for r in rows) else 1


def run(env: TowerEnvironment, fakes: list[FakeProcess], args: argparse.Namespace) -> list[Row]:
    from django.contrib.auth import get_user_model

    from generation.events import project_group
    from generation.models import Backend
    from generation.services.reconcile import backend_refresh
    from projects.services import project_create

    owner = get_user_model().objects.create_user("bench", password=None)
    project = project_create(owner=owner, name="Bench")
    backends = []
    for i, fake in enumerate(fakes):
        backend = Backend.objects.create(name=f"fake-{i}", url=fake.url, max_in_flight=MAX_IN_FLIGHT)
        backend_refresh(backend=backend, force_object_info=True)
        backends.append(backend)
    recorder = EventRecorder([project_group(project.pk)])
    recorder.start()
    try:
        return _rows(env, fakes, args, recorder, owner, project, backends)
    finally:
        recorder.stop()


def _rows(
    env: TowerEnvironment,
    fakes: list[FakeProcess],
    args: argparse.Namespace,
    recorder: EventRecorder,
    owner: Any,
    project: Any,
    backends: list[Any],
) -> list[Row]:
    from generation.models import Backend
    from generation.services.reconcile import backend_refresh

    bench = Bench(env, recorder, owner, project, fakes)
    weightless = shipped("weightless-image")

    # One backend for throughput and latency: the direct client gets the same single server.
    Backend.objects.filter(pk=backends[1].pk).update(enabled=False)
    t0 = time.monotonic()
    # Warm-up: workers imported, connections open, scoring's models loaded. Its scoring is awaited:
    # the first row's request otherwise found every worker loading models (the 50 ms row's first
    # prompt ran 505 ms after the request, its job_run tasks queued behind six scoring tasks).
    warm, _ = bench.run_jobs(weightless, 6, timeout=60)
    wait_scored(warm, timeout=60)
    print(f"warm-up {time.monotonic() - t0:.1f} s", file=sys.stderr)

    rows: list[Row] = []
    wanted = set(args.only or ROW_NAMES)
    # The compute rows run one full request (60 jobs by default), as the zero-compute row does.
    compute_jobs = max(10, args.jobs // 2)
    for compute, target in COMPUTE_ROWS:
        if f"{compute * 1000:.0f}ms" not in wanted:
            continue
        fakes[0].configure(delays={"ImageAddNoise": compute})
        label = f"{compute * 1000:.0f} ms compute"
        rows += throughput_rows(bench, weightless, fakes[0].url, args.jobs, label, target=target)
    if "gap" in wanted:
        fakes[0].configure(delays={"ImageAddNoise": COMPUTE_ROWS[-1][0]})
        rows += idle_gap_rows(bench, weightless, fakes[0], compute_jobs)
    fakes[0].configure(delays={})
    if "zero" in wanted:
        rows += throughput_rows(
            bench,
            weightless,
            fakes[0].url,
            args.jobs,
            "zero compute (report; floor)",
            target=ZERO_COMPUTE_FLOOR,
            pairs=max(1, args.pairs),
        )
    if "latency" in wanted:
        rows += latency_rows(bench, weightless, fakes[0].url, 10, "idle backend")

    Backend.objects.filter(pk=backends[1].pk).update(enabled=True)
    if "affinity" in wanted:
        rows += affinity_rows(bench, fakes, 16)

    for url in args.comfyui:
        Backend.objects.update(enabled=False)
        real = Backend.objects.create(name=f"real-{uuid.uuid4().hex[:4]}", url=url, max_in_flight=MAX_IN_FLIGHT)
        if not backend_refresh(backend=real, force_object_info=True):
            raise SystemExit(f"{url} is not reachable")
        # The fake's rows run on warm processes; a backend just added costs its first jobs more
        # (each worker decodes its /object_info, the server runs a graph it has not seen): shown
        # on its own row, kept out of the throughput row.
        _, cold = bench.run_jobs(weightless, 2)
        rows.append(Row(f"first 2 jobs on a backend just added, {url}", 1000 * cold, None, "ms"))
        rows += throughput_rows(bench, weightless, url, args.jobs, f"zero compute, {url}", target=ZERO_COMPUTE_FLOOR)
        rows += latency_rows(bench, weightless, url, 10, url)
        Backend.objects.filter(pk=real.pk).update(enabled=False)
    return rows


if __name__ == "__main__":
    sys.exit(main())
