"""The supervisor on its own: merged output with \\r redraws, and a trainer that ignores SIGTERM."""

from __future__ import annotations

import os
import sys
import threading

from training.trainer.supervisor import supervise

IGNORES_SIGTERM = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""

REDRAWS = """
import sys
sys.stdout.write("header\\n")
for i in range(1, 4):
    sys.stdout.write(f"\\rsteps: {i}/3")
sys.stdout.write("\\n")  # tqdm ends its bar with a newline when it closes
sys.stdout.flush()
sys.stderr.write("warning on stderr\\n")
sys.exit(3)
"""


def test_lines_split_on_carriage_returns_and_stderr_is_merged(tmp_path):
    seen: list[str] = []
    result = supervise([sys.executable, "-c", REDRAWS], cwd=tmp_path, on_line=seen.append, poll_interval=0.05)
    assert result.returncode == 3 and not result.ok
    assert seen[:4] == ["header", "steps: 1/3", "steps: 2/3", "steps: 3/3"]
    assert "warning on stderr" in seen
    assert result.tail == seen


def test_cancel_escalates_to_sigkill_after_the_grace_period(tmp_path):
    started = threading.Event()
    pids: list[int] = []

    def on_line(line: str) -> None:
        if line == "ready":
            started.set()

    result = supervise(
        [sys.executable, "-c", IGNORES_SIGTERM],
        cwd=tmp_path,
        on_start=pids.append,
        on_line=on_line,
        should_cancel=started.is_set,
        poll_interval=0.05,
        grace=0.5,
    )
    assert result.cancelled
    assert result.returncode == -9  # SIGTERM was ignored; SIGKILL ended it
    try:
        os.kill(pids[0], 0)
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("the trainer is still alive")


def test_a_missing_program_is_an_error_not_an_exception(tmp_path):
    result = supervise(["/nonexistent/train_network.py"], cwd=tmp_path)
    assert result.error.startswith("cannot start '/nonexistent/train_network.py'")
    assert not result.ok
