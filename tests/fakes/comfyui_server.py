"""The fake ComfyUI server proper: wiring of state, routes and worker inside one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.comfyui_executor import Executor
from tests.fakes.comfyui_framepack import framepack_object_info
from tests.fakes.comfyui_hub import Hub
from tests.fakes.comfyui_nodes import VHS_OBJECT_INFO
from tests.fakes.comfyui_recordings import object_info_full
from tests.fakes.comfyui_routes import build_app
from tests.fakes.comfyui_state import Counters, FakeComfyConfig, QueueItem, ServerState
from tests.fakes.comfyui_validation import PromptValidator

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")
_COMBOS = {
    "checkpoints": [
        ("CheckpointLoaderSimple", "ckpt_name"),
        ("CheckpointLoader", "ckpt_name"),
        ("ImageOnlyCheckpointLoader", "ckpt_name"),
        ("unCLIPCheckpointLoader", "ckpt_name"),
        ("CreateHookModelAsLora", "ckpt_name"),
        ("CreateHookModelAsLoraModelOnly", "ckpt_name"),
    ],
    "diffusion_models": [("UNETLoader", "unet_name"), ("LoadFramePackModel", "model")],
    "text_encoders": [("CLIPLoader", "clip_name"), ("DualCLIPLoader", "clip_name1"), ("DualCLIPLoader", "clip_name2")],
    "clip_visions": [("CLIPVisionLoader", "clip_name")],
    "loras": [
        ("LoraLoader", "lora_name"),
        ("LoraLoaderModelOnly", "lora_name"),
        ("CreateHookLora", "lora_name"),
        ("CreateHookLoraModelOnly", "lora_name"),
    ],
}


class FakeServer:
    def __init__(self, config: FakeComfyConfig, root: Path, on_change: Callable[[], None]) -> None:
        self.config = config
        self.counters = Counters()
        self.dirs = {name: (root / name).resolve() for name in ("input", "output", "temp")}
        for path in self.dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        self._on_change = on_change
        self._object_info = object_info_full()
        if config.video_helper_suite:
            self._object_info.update(copy.deepcopy(VHS_OBJECT_INFO))
        if config.framepack:
            self._object_info.update(framepack_object_info(config.diffusion_models))
        self._object_info.update(copy.deepcopy(config.extra_object_info))
        self.hub = Hub()
        self.state = ServerState()
        self.executor = self._new_executor()
        self._worker: asyncio.Task | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.host = "127.0.0.1"
        self.port = 0

    def _new_executor(self) -> Executor:
        return Executor(self.state, self.hub, self.config, self.counters, self.object_info, self.dirs, self.notify)

    def notify(self) -> None:
        self._on_change()

    # --- node definitions with this server's model and input files

    def object_info(self) -> dict[str, dict]:
        info = self._object_info
        for kind, targets in _COMBOS.items():
            names = list(getattr(self.config, kind))
            for node, field in targets:
                if node in info:
                    info[node]["input"]["required"][field][0] = names
        if "VAELoader" in info:
            info["VAELoader"]["input"]["required"]["vae_name"][0] = [*self.config.vaes, "pixel_space"]
        if "LoadImage" in info:
            files = sorted(
                p.name for p in self.dirs["input"].iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            info["LoadImage"]["input"]["required"]["image"][0] = files
        return info

    def validator(self) -> PromptValidator:
        return PromptValidator(self.object_info(), {"LoadImage": {"image": self._image_exists}})

    def _image_exists(self, class_type: str, value: Any) -> str | bool:
        name, _, folder = str(value).partition(" [")
        base = self.dirs.get(folder.rstrip("]") or "input", self.dirs["input"])
        if (base / name).is_file():
            return True
        return f"Invalid image file: {value}"

    # --- queue

    async def enqueue(self, item: QueueItem) -> None:
        async with self.state.cond:
            self.state.put(item)
            self.state.cond.notify_all()
            self.counters.max_queued = max(self.counters.max_queued, len(self.state.queue) + len(self.state.running))
        self.counters.prompts_queued += 1
        await self.executor.broadcast_status()

    async def set_paused(self, paused: bool) -> None:
        async with self.state.cond:
            self.state.paused = paused
            self.state.cond.notify_all()

    # --- lifecycle

    async def start(self, host: str, port: int) -> None:
        self.host = host
        self._runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await self._listen(port)
        self._worker = asyncio.create_task(self.executor.run_forever())

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, port)
        await self._site.start()
        server = self._site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self._stop_worker()
        await self.hub.close_all()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _stop_worker(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def restart(self, downtime: float) -> None:
        """Like a killed and restarted ComfyUI: sockets dropped, queue, history and caches gone."""
        await self._stop_worker()
        await self.hub.close_all()
        if downtime > 0 and self._site is not None:
            await self._site.stop()
            await asyncio.sleep(downtime)
            await self._listen(self.port)
        self.state = ServerState()
        self.executor = self._new_executor()
        self._worker = asyncio.create_task(self.executor.run_forever())
        self.notify()
