"""Waiting on a condition, free ports, and ``manage.py qcluster`` as a child process.

Django-free, so benchmarks can import it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A condition never held: an assertion error, so pytest reports it as a failed test."""


def wait_until(condition: Callable[[], T], *, timeout: float = 15, what: str, interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something truthy and return that; give up after
    ``timeout`` seconds (the condition is always asked once more at the deadline)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (also what a "closed port" test needs)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_url(settings_dict: Mapping[str, object]) -> str:
    """``DATABASE_URL`` for a child process on the same database as ``settings_dict``
    (``django.db.connection.settings_dict``: the test database, not the configured one)."""
    name = str(settings_dict["NAME"])
    if str(settings_dict["ENGINE"]).endswith("sqlite3"):
        return f"sqlite:///{Path(name).resolve()}"
    password = settings_dict.get("PASSWORD") or ""
    auth = f"{settings_dict['USER']}" + (f":{password}" if password else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{name}"


def worker_env(
    *,
    settings_dict: Mapping[str, object],
    redis_url: str,
    prefix: str,
    secret_key: str,
    media_root: object,
    var_dir: Path | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a worker child process on the test's database, Redis (under its own
    ``prefix``) and media, plus ``extra`` settings."""
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY_FILE"}
    env.update(
        DATABASE_URL=database_url(settings_dict),
        REDIS_URL=redis_url,
        REDIS_PREFIX=prefix,
        SECRET_KEY=secret_key,
        MEDIA_ROOT=str(media_root),
    )
    if var_dir is not None:
        env["TOWER_VAR_DIR"] = str(var_dir)
    env.update(extra)
    return env


def stop_process_group(process: subprocess.Popen[bytes], *, grace: float = 20) -> None:
    """SIGTERM to the process (a graceful stop: a qcluster stops its own workers), then SIGKILL
    to its whole process group after ``grace`` seconds, or at once if it exited, so no child
    outlives it."""
    if process.poll() is None:
        process.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class QCluster:
    """A running ``manage.py qcluster`` in its own process group, its output in ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def stop(self, *, grace: float = 20) -> None:
        stop_process_group(self.process, grace=grace)


def start_qcluster(*, env: Mapping[str, str], log_path: Path) -> QCluster:
    """Start ``manage.py qcluster`` with exactly ``env`` (build it from ``os.environ``: the child
    needs PATH and the like); stop it with ``QCluster.stop`` or use ``running_qcluster``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return QCluster(process, log_path)


@contextlib.contextmanager
def running_qcluster(*, env: Mapping[str, str], log_path: Path, grace: float = 20) -> Iterator[QCluster]:
    cluster = start_qcluster(env=env, log_path=log_path)
    try:
        yield cluster
    finally:
        cluster.stop(grace=grace)
