"""Shared pieces of the benchmarks: a throw-away Tower environment, fake ComfyUI processes, the table.

Everything runs as separate processes, as in production: the benchmark is the web process (it
calls the same services the API calls), ``manage.py qcluster`` runs the workers, Redis is the
embedded one (or ``REDIS_URL``), the database a temporary SQLite file in WAL mode (or
``DATABASE_URL``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The tests' helpers, re-exported for the bench modules.
from tests.support.processes import free_port as free_port
from tests.support.processes import wait_until as wait_until

ROOT = Path(__file__).resolve().parents[1]


def exit_on_sigterm() -> None:
    """Make SIGTERM (``kill``, a CI timeout) unwind like Ctrl-C: Python's default ends the process
    at once, and the ``finally`` blocks that stop the qcluster, the fake servers and Redis and
    remove the temporary directory never ran (those processes were left behind)."""

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- CPU accounting ---------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: int) -> tuple[int, int, float] | None:
    """(parent pid, process group, CPU seconds) of a live process, from /proc (Linux)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / _TICK


def cpu_seconds(groups: dict[str, Callable[[int, int, int], bool]]) -> dict[str, float]:
    """CPU seconds used so far by each named group of processes: ``groups[name](pid, ppid, pgrp)``
    says whether a process belongs (first match wins). Processes that have exited are not counted,
    so take readings while the processes of interest are alive."""
    totals = dict.fromkeys(groups, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is None:
            continue
        ppid, pgrp, seconds = stat
        for name, member in groups.items():
            if member(int(entry.name), ppid, pgrp):
                totals[name] += seconds
                break
    return totals


# --- fake ComfyUI processes -------------------------------------------------------------------


class FakeProcess:
    """``bench/_fake.py`` in its own process; counters through its control port."""

    def __init__(self, root: Path, *, checkpoints: list[str], model_load_delay: float = 0.0) -> None:
        self.port, self.control_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, str(ROOT / "bench" / "_fake.py"), "--port", str(self.port)]
        args += ["--control-port", str(self.control_port), "--root", str(root)]
        args += ["--model-load-delay", str(model_load_delay)]
        for name in checkpoints:
            args += ["--checkpoint", name]
        self.process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"fake ComfyUI did not start: {line!r}")

    def _call(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        url = f"http://127.0.0.1:{self.control_port}{path}"
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
        # S310: our own http:// control port, never a user-supplied URL.
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def counters(self) -> dict[str, Any]:
        return self._call("/counters")

    def reset(self) -> None:
        self._call("/reset", {})

    def configure(self, **knobs: Any) -> None:
        self._call("/configure", knobs)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# --- Tower ------------------------------------------------------------------------------------


class TowerEnvironment:
    """A temporary var dir, database and Redis; Django set up in this process; qcluster on demand."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tower-bench-"))
        self.redis: Any = None
        self.cluster: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "qcluster.log"

    def setup(self) -> None:
        var = self.tmp / "var"
        var.mkdir()
        env = {
            "TOWER_VAR_DIR": str(var),
            "MEDIA_ROOT": str(var / "media"),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "REDIS_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
            "DJANGO_SETTINGS_MODULE": "tower.settings",
        }
        if not os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = f"sqlite:///{self.tmp / 'bench.sqlite3'}"
        if not os.environ.get("REDIS_URL"):
            from tower.core.embedded import EmbeddedRedis

            self.redis = EmbeddedRedis(var_dir=self.tmp / "redis", persist=False)
            env["REDIS_URL"] = self.redis.start()
        os.environ.update(env)
        os.environ.setdefault("LOG_LEVEL", "INFO")
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    def start_cluster(self, workers: int | None = None) -> None:
        env = dict(os.environ)
        if workers is not None:
            env["TOWER_WORKERS"] = str(workers)
        with self.log_path.open("ab") as log:
            self.cluster = subprocess.Popen(
                [sys.executable, str(ROOT / "manage.py"), "qcluster"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop_cluster(self) -> None:
        if self.cluster is None:
            return
        os.killpg(self.cluster.pid, signal.SIGTERM)
        try:
            self.cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.cluster.pid, signal.SIGKILL)
            self.cluster.wait()
        self.cluster = None

    def teardown(self) -> None:
        self.stop_cluster()
        if self.redis is not None:
            self.redis.stop()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


ENDS = ("job_complete", "job_failed", "job_cancelled")


@dataclass
class EventRecorder:
    """Subscribes to Channels groups through the real Redis layer; records (type, job, arrival).

    It stands in for a browser, so its own cost should be what a page's consumer pays (the layer's
    receive): each event is appended, a job's end also goes in a dict, and waiters are woken only
    by ends, so waiting is O(1) per event rather than a scan of everything received so far.
    """

    groups: list[str]
    events: list[tuple[str, int, float, dict[str, Any]]] = field(default_factory=list)
    _ends: dict[int, tuple[str, float]] = field(default_factory=dict)
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True, name="events").start()
        if not self._ready.wait(10):
            raise RuntimeError("could not subscribe to the channel layer")

    async def _run(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        channel = await layer.new_channel()
        for group in self.groups:
            await layer.group_add(group, channel)
        self._ready.set()
        receive: asyncio.Task[Any] | None = None
        while not self._stop.is_set():
            if receive is None:
                receive = asyncio.ensure_future(layer.receive(channel))
            done, _ = await asyncio.wait({receive}, timeout=0.5)
            if not done:
                continue
            try:
                message, receive = receive.result(), None
            except Exception as exc:  # the layer's Redis went away: the run is being torn down
                if not self._stop.is_set():
                    print(f"event recorder stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
                return
            arrived = time.time()
            event = message.get("event") or {}
            kind, job = str(event.get("type")), int(event.get("job") or 0)
            self.events.append((kind, job, arrived, event))
            if kind in ENDS:
                with self._changed:
                    self._ends.setdefault(job, (kind, arrived))
                    self._changed.notify_all()
        if receive is not None:
            receive.cancel()

    def stop(self) -> None:
        self._stop.set()

    def ended(self, job_ids: set[int]) -> dict[int, tuple[str, float]]:
        with self._changed:
            return {job: self._ends[job] for job in job_ids if job in self._ends}

    def wait_ended(self, job_ids: set[int], timeout: float) -> dict[int, tuple[str, float]]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                ends = {job: self._ends[job] for job in job_ids if job in self._ends}
                if len(ends) == len(job_ids):
                    return ends
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(job_ids) - len(ends)} of {len(job_ids)} jobs did not end in {timeout} s")
                self._changed.wait(min(left, 0.2))


def shipped(slug: str) -> Any:
    from generation.models import WorkflowTemplate
    from generation.services.templates import template_sync_shipped

    if not WorkflowTemplate.objects.filter(slug=slug, project__isnull=True).exists():
        template_sync_shipped()
    return WorkflowTemplate.objects.get(slug=slug, project__isnull=True)


# --- the table --------------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    tower: float
    baseline: float | None
    unit: str
    target: str = ""
    passed: bool | None = None  # None: reported only

    @property
    def ratio(self) -> str:
        if self.baseline in (None, 0) or self.baseline != self.baseline:
            return "-"
        return f"{self.tower / self.baseline:.2f}"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("×", ""):  # ratios and counts of cores: two decimals, as the ratio column has
        return f"{value:.2f} {unit}".strip()
    return f"{value:.1f} {unit}" if abs(value) < 1000 else f"{value:.0f} {unit}"


def print_table(rows: list[Row]) -> None:
    header = ("metric", "Tower", "baseline", "ratio", "target", "result")
    lines = [
        (
            r.metric,
            _fmt(r.tower, r.unit),
            _fmt(r.baseline, r.unit),
            r.ratio,
            r.target or "(report)",
            "-" if r.passed is None else ("PASS" if r.passed else "FAIL"),
        )
        for r in rows
    ]
    widths = [max(len(str(x[i])) for x in [header, *lines]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*header))
    print(fmt.format(*("-" * w for w in widths)))
    for line in lines:
        print(fmt.format(*line))
