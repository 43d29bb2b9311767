"""Run a trainer command as a supervised subprocess. No Django.

The process gets its own session (so its process group holds accelerate's children too), its
stdout and stderr merged and read by a thread; lines (``\\n`` or tqdm's ``\\r``) are handed to the
caller in the calling thread, which also polls ``should_cancel`` about every ``poll_interval``.
Cancelling sends SIGTERM to the group, then SIGKILL after ``grace`` seconds.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from training.trainer.parse import split_output

TAIL_LINES = 500


@dataclass
class RunResult:
    returncode: int | None
    cancelled: bool = False
    tail: list[str] = field(default_factory=list)
    error: str = ""  # the command could not be started

    @property
    def ok(self) -> bool:
        return not self.cancelled and not self.error and self.returncode == 0


def _reader(stream: io.BufferedReader, lines: queue.Queue[str | None]) -> None:
    buffer = ""
    try:
        while chunk := stream.read1(65536):
            buffer += chunk.decode("utf-8", errors="replace")
            complete, buffer = split_output(buffer)
            for line in complete:
                lines.put(line)
        if buffer.strip():
            lines.put(buffer)
    finally:
        lines.put(None)


def kill_group(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Signal the process group ``pid`` leads; False when it is already gone."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def supervise(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[int], None] = lambda pid: None,
    on_line: Callable[[str], None] = lambda line: None,
    on_idle: Callable[[], None] = lambda: None,
    should_cancel: Callable[[], bool] = lambda: False,
    poll_interval: float = 0.5,
    grace: float = 10.0,
) -> RunResult:
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        return RunResult(returncode=None, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
    on_start(process.pid)
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_reader, args=(process.stdout, lines), daemon=True)
    reader.start()
    cancelled = False
    kill_deadline: float | None = None
    next_check = time.monotonic() + poll_interval
    eof = False
    orphans_killed = False
    try:
        while not eof or process.poll() is None:
            try:
                line = lines.get(timeout=poll_interval) if not eof else None
            except queue.Empty:
                line = None
            else:
                if line is None:
                    eof = True
                else:
                    tail.append(line)
                    on_line(line)
            now = time.monotonic()
            if not eof and not orphans_killed and process.poll() is not None:
                # The leader is gone but something it started still holds the pipe open.
                orphans_killed = kill_group(process.pid, signal.SIGKILL) or True
            if eof and process.poll() is None:
                # Output closed but the process lives on (it closed stdout): wait on the process itself.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=poll_interval)
                now = time.monotonic()
            if now >= next_check:
                next_check = now + poll_interval
                on_idle()
                if not cancelled and process.poll() is None and should_cancel():
                    cancelled = True
                    kill_group(process.pid, signal.SIGTERM)
                    kill_deadline = now + grace
            if kill_deadline is not None and now >= kill_deadline and process.poll() is None:
                kill_group(process.pid, signal.SIGKILL)
                kill_deadline = None
    finally:
        if process.poll() is None:  # an exception in a callback: leave nothing behind
            kill_group(process.pid, signal.SIGKILL)
            process.wait()
        # Children that outlived the leader (accelerate's workers) go too.
        kill_group(process.pid, signal.SIGKILL)
        reader.join(timeout=5)
        if process.stdout:
            process.stdout.close()
    while True:  # lines the reader queued after the loop ended
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            tail.append(line)
            on_line(line)
    return RunResult(returncode=process.returncode, cancelled=cancelled, tail=list(tail))
