"""``manage.py web``: only the web processes, for a production web machine (see the README).

``TOWER_WEB_PROCESSES`` daphne processes share one port (``tower.core.webpool``). SIGTERM or
Ctrl-C stops them all; if one dies the others are stopped and the command exits non-zero, so the
service manager (systemd, a container runtime) restarts the whole set.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tower.core.env import env_int, env_str
from tower.core.webpool import daphne_command, listen, single_daphne_command

STOP_TIMEOUT = 20.0


class Command(BaseCommand):
    help = "Run TOWER_WEB_PROCESSES daphne processes on one port (the web tier; no Redis, no worker)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", help="address to listen on (TOWER_HOST, default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port to listen on (TOWER_PORT, default 8000)")
        parser.add_argument("--processes", type=int, help="web processes (TOWER_WEB_PROCESSES)")

    def handle(self, *args: Any, **options: Any) -> None:
        host = options["host"] or env_str("TOWER_HOST", "127.0.0.1")
        port = options["port"] or env_int("TOWER_PORT", 8000, min_value=1, max_value=65535)
        processes = options["processes"] or settings.WEB_PROCESSES
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        log_dir = settings.VAR_DIR / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            listener = listen(host, port)
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
        children: list[subprocess.Popen[bytes]] = []
        with listener:
            if processes == 1 or listener.family != socket.AF_INET:
                listener.close()
                children.append(subprocess.Popen(single_daphne_command(host, port, log_dir=log_dir)))
            else:
                for index in range(1, processes + 1):
                    command = daphne_command(listener, port=port, index=index, log_dir=log_dir)
                    children.append(subprocess.Popen(command, pass_fds=(listener.fileno(),)))
        self.stdout.write(f"Tower web: {len(children)} daphne process(es) on {host}:{port}")
        sys.exit(_supervise(children))


def _supervise(children: list[subprocess.Popen[bytes]]) -> int:
    """Wait for a signal or a child's end, stop the rest; 0 after a signal, 1 after a death."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    while not stop.is_set() and all(child.poll() is None for child in children):
        stop.wait(0.2)
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return 0 if stop.is_set() else 1
