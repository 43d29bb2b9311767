"""Several web processes on one port: the parent binds the listening socket, each daphne child
adopts it (``daphne --fd``) and the kernel hands every new connection to one of them.

One daphne runs Django in one process: under load its single core is the limit and requests queue.
N processes use N cores without a load balancer; the parent closes its copy of the socket once the
children hold theirs, so the port is free again when they are gone.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path


def listen(host: str, port: int, *, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket on ``host:port`` that children can inherit; ``OSError`` if taken."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def daphne_command(sock: socket.socket, *, port: int, index: int, log_dir: Path) -> list[str]:
    """The command line of web process ``index`` adopting ``sock`` (pass it with ``pass_fds``).

    Each process writes its own access log (``access-PORT-N.log``): one file per writer.
    """
    if sock.family != socket.AF_INET:
        # daphne adopts a descriptor as IPv4 only (its fd endpoint takes no address family).
        raise OSError("several web processes need an IPv4 address; use TOWER_WEB_PROCESSES=1 for IPv6")
    return [
        sys.executable, "-m", "daphne",
        "--fd", str(sock.fileno()),
        "--access-log", str(log_dir / f"access-{port}-{index}.log"),
        "tower.asgi:application",
    ]  # fmt: skip


def single_daphne_command(host: str, port: int, *, log_dir: Path) -> list[str]:
    """One daphne binding the port itself (one web process, or an IPv6 address)."""
    return [
        sys.executable, "-m", "daphne",
        "-b", host, "-p", str(port),
        "--access-log", str(log_dir / "access.log"),
        "tower.asgi:application",
    ]  # fmt: skip
