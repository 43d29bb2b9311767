"""A fake ComfyUI on a real loopback port, speaking the protocol recorded from ComfyUI 0.3.64.

In a test (sync or async; the server runs in its own thread and event loop)::

    with FakeComfy(checkpoints=["anime.safetensors"], node_delay=0.01) as fake:
        ...  # fake.url, fake.ws_url, fake.counters, fake.restart(), fake.pause(), ...

As a process, for benchmarks and browser tests::

    python -m tests.fakes.comfyui --port 8188 --checkpoint anime.safetensors --node-delay 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.fakes.comfyui_server import FakeServer
from tests.fakes.comfyui_state import Counters, FakeComfyConfig

T = TypeVar("T")
__all__ = ["FakeComfy", "FakeComfyConfig"]


class FakeComfy:
    """Start/stop a fake ComfyUI in a background thread. Keyword arguments are FakeComfyConfig fields."""

    def __init__(self, *, root: Path | str | None = None, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        self.config = FakeComfyConfig(**knobs)
        self._root_arg = Path(root) if root is not None else None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: FakeServer | None = None
        self._changed = threading.Condition()

    # --- lifecycle

    def start(self) -> FakeComfy:
        if self._root_arg is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="fake-comfyui-")
        self.root = self._root_arg or Path(self._tmp.name)  # type: ignore[union-attr]
        self._server = FakeServer(self.config, self.root, self._notify)
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._server.start(self.host, self._port))  # type: ignore[union-attr]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._server.stop())  # type: ignore[union-attr]
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-comfyui", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake ComfyUI did not start within 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeComfy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        assert self._loop is not None, "FakeComfy is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # --- addresses and directories

    @property
    def server(self) -> FakeServer:
        assert self._server is not None, "FakeComfy is not running"
        return self._server

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def output_dir(self) -> Path:
        return self.server.dirs["output"]

    @property
    def input_dir(self) -> Path:
        return self.server.dirs["input"]

    @property
    def temp_dir(self) -> Path:
        return self.server.dirs["temp"]

    # --- observation

    @property
    def counters(self) -> Counters:
        return self.server.counters

    @staticmethod
    def _snapshot(read: Callable[[], T]) -> T:
        # The server thread may change a dict while it is copied here; copy again then.
        for _ in range(100):
            try:
                return read()
            except RuntimeError:
                continue
        return read()

    @property
    def history(self) -> dict[str, dict]:
        return self._snapshot(lambda: dict(self.server.state.history))

    def queue_ids(self) -> tuple[list[str], list[str]]:
        state = self.server.state
        return self._snapshot(lambda: ([i[1] for i in state.running.values()], [i[1] for i in state.pending_items()]))

    def held_nodes(self) -> list[str]:
        """Nodes (of the running prompt) waiting for release()."""
        return self._snapshot(lambda: list(self.server.state.held))

    def connected_clients(self) -> list[str]:
        return self._snapshot(lambda: list(self.server.hub.sockets))

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        """Block until predicate() is truthy (re-checked on every server state change)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"fake ComfyUI: timed out after {timeout} s waiting for {what}")
                self._changed.wait(min(remaining, 0.05))

    async def wait_for_async(self, predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
        return await asyncio.to_thread(self.wait_for, predicate, timeout, what)

    # --- hooks

    def pause(self) -> None:
        """The worker takes no new job (the running one finishes)."""
        self._call(self.server.set_paused(True))

    def resume(self) -> None:
        self._call(self.server.set_paused(False))

    def release(self, node_id: str | None = None) -> None:
        """Let held nodes (see the ``holds`` knob) finish: one node id, or all of them."""

        async def _release() -> None:
            for held_id, event in list(self.server.state.held.items()):
                if node_id is None or held_id == node_id:
                    event.set()

        self._call(_release())

    def interrupt(self) -> None:
        self.server.state.interrupted = True

    def stall_websockets(self, drop: bool = False) -> None:
        """Sockets stay open but receive nothing; messages are held (or dropped) until unstalled."""
        hub = self.server.hub
        hub.drop_while_stalled = drop
        hub.stalled = True

    def unstall_websockets(self) -> None:
        self._call(self.server.hub.unstall())

    def drop_websockets(self) -> None:
        """Close every WebSocket (clients may reconnect)."""
        self._call(self.server.hub.close_all())

    def restart(self, downtime: float = 0.0) -> None:
        """Kill and restart: sockets dropped, queue, history, caches and counters of prompts gone."""
        self._call(self.server.restart(downtime), timeout=downtime + 10)

    def configure(self, **knobs: Any) -> None:
        for name, value in knobs.items():
            if not hasattr(self.config, name):
                raise AttributeError(f"unknown FakeComfy knob {name!r}")
            setattr(self.config, name, value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake ComfyUI server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument("--root", type=Path, help="directory for input/, output/, temp/ (default: a temp dir)")
    parser.add_argument("--node-delay", type=float, default=0.0)
    parser.add_argument("--model-load-delay", type=float, default=0.0)
    parser.add_argument("--checkpoint", action="append", default=[], dest="checkpoints")
    parser.add_argument("--lora", action="append", default=[], dest="loras")
    parser.add_argument("--vae", action="append", default=[], dest="vaes")
    parser.add_argument("--legacy-prompt-id", action="store_true", help="ignore client-chosen prompt ids")
    parser.add_argument("--sampler-previews", action="store_true")
    parser.add_argument("--video-helper-suite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    knobs = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(FakeComfyConfig)
        if hasattr(args, f.name) and f.name not in ("honor_prompt_id",)
    }
    fake = FakeComfy(root=args.root, host=args.host, port=args.port, honor_prompt_id=not args.legacy_prompt_id, **knobs)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with fake:
        logging.info("fake ComfyUI listening on %s (files in %s)", fake.url, fake.root)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
