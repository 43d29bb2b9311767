"""API throughput: an open loop of 100 requests a second on ``GET /api/v1/jobs?page_size=50``.

    .venv/bin/python bench/_api_load.py                  # embedded SQLite and Redis (temporary)
    .venv/bin/python bench/_api_load.py --rate 150 --seconds 30

Tower runs the way ``manage.py serve`` runs it: ``TOWER_WEB_PROCESSES`` daphne processes sharing
one port (``manage.py web``), each shedding overload with a fast 503. The baseline in the same run
is one daphne process without a bound on requests in progress (the set-up before both). Requests
are sent on schedule whatever the answers (an open loop: a slow server meets the same traffic),
each on its own connection with a Bearer token, over 250 jobs with their graphs and parameters.
A client gives up after ``--give-up`` seconds. Target: ≥ 100 req/s served with p99 ≤ 300 ms.
Prints a table; exit 1 when the target is missed. ``bench/scale.py --api-load`` imports ``rows``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import ROOT, Row, TowerEnvironment, cpu_seconds, exit_on_sigterm, free_port, print_table

JOBS = 250
PAGE = "/api/v1/jobs?page_size=50"
TARGET_RATE = 100.0
TARGET_P99_MS = 300.0


@dataclass
class Outcome:
    """What the clients saw during one open loop."""

    offered: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, answers 200
    body_bytes: list[int] = field(default_factory=list)
    shed: int = 0  # 503s
    web_cpu: float = 0.0  # CPU seconds of the web processes during the loop
    failed: int = 0  # other statuses, connection errors, clients that gave up

    @property
    def served_rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_answer(self) -> float:
        answers = len(self.latencies) + self.shed
        return self.web_cpu / answers * 1000 if answers else float("nan")

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


# --- the data ------------------------------------------------------------------------------------


def make_data() -> str:
    """A project with ``JOBS`` jobs (graphs, parameters, timings as real ones carry) and a token
    for its owner; returns the raw token."""
    from django.contrib.auth import get_user_model

    from generation.models import Job, JobStatus
    from projects.services import project_create
    from tower.api_v1 import api_token_create

    doc = json.loads((ROOT / "workflows" / "txt2img-sd15.json").read_text())
    owner = get_user_model().objects.create_user(username=f"load-{os.getpid()}", password=None)
    project = project_create(owner=owner, name=f"API load {os.getpid()}")
    statuses = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.QUEUED, JobStatus.RUNNING]
    Job.objects.bulk_create(
        Job(
            project=project,
            created_by=owner,
            status=statuses[n % len(statuses)],
            prompt=f"1girl, rooftop at dusk, wind, shot {n}",
            negative_prompt="lowres, bad hands",
            seed=1000 + n,
            graph=doc["graph"],
            params={"steps": 28, "cfg": 7.0, "width": 832, "height": 1216, "sampler": "dpmpp_2m", "seed": 1000 + n},
            overrides={"steps": 28},
            timings={str(node): 0.1 * node for node in range(1, 12)},
            label=f"cfg=7, steps=28 #{n}",
        )
        for n in range(JOBS)
    )
    _, key = api_token_create(user=owner, name="api load")
    return key


# --- the server ----------------------------------------------------------------------------------


class Web:
    """``manage.py web`` (the processes serve runs) on a free port, until ``stop``."""

    def __init__(self, *, processes: int, max_in_flight: int | None) -> None:
        self.port = free_port()
        env = dict(os.environ, LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        if max_in_flight is not None:
            env["TOWER_WEB_MAX_IN_FLIGHT"] = str(max_in_flight)
        self.log = Path(os.environ["TOWER_VAR_DIR"]) / f"web-{self.port}.log"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "manage.py"),
                    "web",
                    "--port",
                    str(self.port),
                    "--processes",
                    str(processes),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, token: str, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"manage.py web exited:\n{self.log.read_text()[-2000:]}")
            try:
                status, _ = asyncio.run(request(self.port, token, timeout=5))
                if status == 200:
                    return
            except (TimeoutError, OSError):
                pass
            time.sleep(0.3)
        raise RuntimeError(f"manage.py web did not answer within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- the clients ---------------------------------------------------------------------------------


async def request(port: int, token: str, *, timeout: float) -> tuple[int, int]:
    """One GET on a new connection; (status, body bytes)."""

    async def exchange() -> tuple[int, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(
                f"GET {PAGE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
                "Accept: application/json\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            body = await reader.read()
            return status, len(body)
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


async def open_loop(port: int, token: str, *, rate: float, seconds: float, give_up: float) -> Outcome:
    outcome = Outcome()
    total = int(rate * seconds)

    async def one() -> None:
        started = time.perf_counter()
        try:
            status, size = await request(port, token, timeout=give_up)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            outcome.failed += 1
            return
        if status == 200:
            outcome.latencies.append(time.perf_counter() - started)
            outcome.body_bytes.append(size)
        elif status == 503:
            outcome.shed += 1
        else:
            outcome.failed += 1

    begin = time.perf_counter()
    tasks = []
    for n in range(total):
        # On schedule whatever the answers: the n-th request leaves at n / rate seconds.
        delay = begin + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    outcome.offered = total
    outcome.seconds = seconds
    return outcome


def measure(*, processes: int, max_in_flight: int | None, token: str, args: argparse.Namespace) -> Outcome:
    web = Web(processes=processes, max_in_flight=max_in_flight)
    try:
        web.wait_ready(token)
        asyncio.run(open_loop(web.port, token, rate=args.rate, seconds=2, give_up=args.give_up))  # warm up
        group = {"web": lambda pid, ppid, pgrp: pgrp == web.process.pid}
        before = cpu_seconds(group)["web"]
        outcome = asyncio.run(open_loop(web.port, token, rate=args.rate, seconds=args.seconds, give_up=args.give_up))
        outcome.web_cpu = cpu_seconds(group)["web"] - before
        return outcome
    finally:
        web.stop()


# --- the table -----------------------------------------------------------------------------------


def rows(args: argparse.Namespace | None = None) -> list[Row]:
    """The rows of this bench; sets up its own throw-away Tower unless Django is already set up."""
    args = args or parse_args([])
    from django.apps import apps

    environment = None
    if not apps.ready:  # run alone; bench/scale.py has set up its own studio
        environment = TowerEnvironment()
        environment.setup()
    try:
        from django.conf import settings

        token = make_data()
        processes = args.processes or settings.WEB_PROCESSES
        load = os.getloadavg()[0]
        print(f"API load: {args.rate:.0f} req/s for {args.seconds:.0f} s, {processes} web processes; "
              f"load average {load:.2f}", flush=True)  # fmt: skip
        base = measure(processes=1, max_in_flight=10_000, token=token, args=args)
        tower = measure(processes=processes, max_in_flight=None, token=token, args=args)
        print(f"load average after: {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        if environment is not None:
            environment.teardown()
    size = sum(tower.body_bytes) / len(tower.body_bytes) if tower.body_bytes else float("nan")
    base_size = sum(base.body_bytes) / len(base.body_bytes) if base.body_bytes else float("nan")
    return [
        Row(
            f"GET jobs ×50 at {args.rate:.0f}/s: served",
            tower.served_rate,
            base.served_rate,
            "req/s",
            f"≥ {TARGET_RATE:.0f} req/s",
            tower.served_rate >= TARGET_RATE * 0.995,
        ),
        Row("  p50 latency (200s)", tower.percentile_ms(0.50), base.percentile_ms(0.50), "ms"),
        Row(
            "  p99 latency (200s)",
            tower.percentile_ms(0.99),
            base.percentile_ms(0.99),
            "ms",
            f"≤ {TARGET_P99_MS:.0f} ms",
            tower.percentile_ms(0.99) <= TARGET_P99_MS,
        ),
        Row("  answered 503 (shed)", tower.shed, base.shed, ""),
        Row(f"  failed or gave up (> {args.give_up:.0f} s)", tower.failed, base.failed, ""),
        Row("  bytes per answer", size, base_size, "B"),
        Row("  web CPU per answer (200 or 503)", tower.cpu_ms_per_answer, base.cpu_ms_per_answer, "ms"),
    ]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="requests a second (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the loop (default 20)")
    parser.add_argument("--processes", type=int, help="web processes (default TOWER_WEB_PROCESSES)")
    parser.add_argument("--give-up", type=float, default=10.0, help="a client's patience in seconds (default 10)")
    return parser.parse_args(argv)


def main() -> int:
    exit_on_sigterm()
    table = rows(parse_args())
    print_table(table)
    return 0 if all(row.passed is not False for row in table) else 1


if __name__ == "__main__":
    sys.exit(main())
