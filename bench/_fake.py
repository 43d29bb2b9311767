"""A fake ComfyUI process for benchmarks, with a control port to read and reset its counters.

python bench/_fake.py --port 8188 --control-port 8189 --checkpoint a.safetensors

The control port answers GET /counters (JSON), POST /reset (counters to zero, caches freed) and
POST /configure (a JSON object of FakeComfyConfig knobs). It exists because the counters live
inside the fake's process and benchmarks must measure the fake as a separate process.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.comfyui import FakeComfy


def _counters(fake: FakeComfy) -> dict[str, Any]:
    c = fake.counters
    return {
        "prompts_received": c.prompts_received,
        "jobs_started": c.jobs_started,
        "jobs_finished": c.jobs_finished,
        "model_loads": dict(c.model_loads),
        "gpu_idle_seconds": c.gpu_idle_seconds,
        "idle_gaps": list(c.idle_gaps),
        "requests": dict(c.requests),
        "sockets": len(fake.server.hub.sockets),
        "messages_sent": dict(fake.server.hub.sent_counts),
    }


def _handler(fake: FakeComfy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(_counters(fake))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"{}")
            if self.path == "/reset":
                fake.counters.__init__()  # type: ignore[misc]  # in place: the executor holds this object
                fake.server.state.loaded_checkpoint = None
                fake.server.state.caches.clear()
                fake.server.hub.sent_counts.clear()
            elif self.path == "/configure":
                fake.configure(**payload)
            self._answer({"ok": True})

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--checkpoint", action="append", default=[], dest="checkpoints")
    parser.add_argument("--node-delay", type=float, default=0.0)
    parser.add_argument("--model-load-delay", type=float, default=0.0)
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with FakeComfy(
        root=args.root,
        port=args.port,
        checkpoints=args.checkpoints,
        node_delay=args.node_delay,
        model_load_delay=args.model_load_delay,
    ) as fake:
        control = ThreadingHTTPServer(("127.0.0.1", args.control_port), _handler(fake))
        threading.Thread(target=control.serve_forever, daemon=True).start()
        print(f"ready {fake.url}", flush=True)
        stop.wait()
        control.shutdown()


if __name__ == "__main__":
    main()
