"""The fake ComfyUI's single worker: runs queued prompts and emits the recorded message order.

Order and routing follow ComfyUI 0.3.64 (execution.py, main.py's prompt_worker): outputs are
staged depth-first, ready nodes are picked output-first, cached nodes never send ``executing``,
``status`` is broadcast, and everything else goes to the prompt's client_id (or, for progress
messages only, to every socket when the prompt has none).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fakes.comfyui_hub import Hub
from tests.fakes.comfyui_media import Frames, png_bytes
from tests.fakes.comfyui_node_types import NodeContext, NodeRuntimeError
from tests.fakes.comfyui_nodes import ALWAYS_CHANGED, MODEL_LOADERS, SAMPLERS, run_node, temp_prefix
from tests.fakes.comfyui_state import Counters, FakeComfyConfig, QueueItem, ServerState
from tests.fakes.comfyui_validation import is_link, set_order


class Interrupted(Exception):
    pass


def _ms() -> int:
    return int(time.time() * 1000)


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    if isinstance(value, Frames):
        return value.describe()
    return str(value)


class Plan:
    """ComfyUI's ExecutionList: a topological dissolve with a user-friendly pick."""

    def __init__(self, prompt: dict, is_cached: Callable[[str], bool], is_output: Callable[[str], bool]):
        self.prompt = prompt
        self.is_cached = is_cached
        self.is_output = is_output
        self.pending: dict[str, None] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, None]] = {}

    def add(self, node_id: str) -> None:
        stack, links = [node_id], []
        while stack:
            uid = stack.pop()
            if uid in self.pending:
                continue
            self.pending[uid] = None
            self.block_count[uid] = 0
            self.blocking[uid] = {}
            for value in self.prompt[uid]["inputs"].values():
                if is_link(value) and not self.is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], uid))
        for source, target in links:
            if target not in self.blocking[source]:
                self.blocking[source][target] = None
                self.block_count[target] += 1

    def empty(self) -> bool:
        return not self.pending

    def pick(self) -> str:
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            raise NodeRuntimeError("graph.DependencyCycleError", "Dependency cycle detected")
        for node in ready:
            if self.is_output(node):
                return node
        for node in ready:
            if any(self.is_output(b) for b in self.blocking[node]):
                return node
        for node in ready:
            if any(self.is_output(c) for b in self.blocking[node] for c in self.blocking[b]):
                return node
        return ready[0]

    def complete(self, node_id: str) -> None:
        del self.pending[node_id]
        for blocked in self.blocking.pop(node_id):
            self.block_count[blocked] -= 1


class Executor:
    def __init__(
        self,
        state: ServerState,
        hub: Hub,
        config: FakeComfyConfig,
        counters: Counters,
        object_info: Callable[[], dict],
        dirs: dict[str, Path],
        on_change: Callable[[], None],
    ) -> None:
        self.state = state
        self.hub = hub
        self.config = config
        self.counters = counters
        self.object_info = object_info
        self.dirs = dirs
        self.on_change = on_change

    async def broadcast_status(self) -> None:
        await self.hub.send_json("status", {"status": self.state.queue_info()})
        self.on_change()

    async def run_forever(self) -> None:
        while True:
            item_id, item = await self._next()
            await self.broadcast_status()
            self.counters.job_started()
            outputs, meta, status, client_id = await self._execute(item)
            if self.config.history_delay:
                await asyncio.sleep(self.config.history_delay)
            self.state.finish(item_id, outputs, meta, status)
            self.counters.job_finished()
            await self.broadcast_status()
            if client_id is not None:
                await self.hub.send_json("executing", {"node": None, "prompt_id": item[1]}, client_id)
            self.on_change()

    async def _next(self) -> tuple[int, QueueItem]:
        async with self.state.cond:
            while True:
                self._apply_flags()
                if self.state.queue and not self.state.paused:
                    return self.state.pop()
                await self.state.cond.wait()

    def _apply_flags(self) -> None:
        flags, self.state.flags = self.state.flags, {}
        free_memory = flags.get("free_memory", False)
        if flags.get("unload_models", free_memory):
            self.state.loaded_checkpoint = None
        if free_memory:
            self.state.caches.clear()
            self.state.temp_prefixes.clear()

    # --- one prompt ---------------------------------------------------------------------

    async def _execute(self, item: QueueItem) -> tuple[dict, dict, dict, str | None]:
        _number, prompt_id, prompt, extra_data, to_execute = item
        self.state.interrupted = False
        client_id = extra_data.get("client_id")
        self.state.executing_client = client_id
        run = _Run(self, prompt_id, prompt, extra_data, client_id)
        await run.message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
        caches = self.state.caches
        caches.retain(set(run.sigs.values()))
        cached = [n for n in prompt if run.sigs[n] in caches.outputs]
        await run.message("execution_cached", {"nodes": cached, "prompt_id": prompt_id}, broadcast=False)
        info = self.object_info()
        plan = Plan(
            prompt,
            is_cached=lambda n: run.sigs[n] in caches.outputs,
            is_output=lambda n: bool(info.get(prompt[n]["class_type"], {}).get("output_node")),
        )
        for node_id in to_execute:
            plan.add(node_id)
        success = True
        while not plan.empty():
            node_id = plan.pick()
            try:
                await run.node(node_id)
            except Interrupted:
                success = False
                await run.message(
                    "execution_interrupted",
                    {
                        "prompt_id": prompt_id,
                        "node_id": node_id,
                        "node_type": prompt[node_id]["class_type"],
                        "executed": list(run.executed),
                    },
                    broadcast=True,
                )
                break
            except NodeRuntimeError as err:
                success = False
                await run.message(
                    "execution_error",
                    {
                        "prompt_id": prompt_id,
                        "node_id": node_id,
                        "node_type": prompt[node_id]["class_type"],
                        "executed": list(run.executed),
                        "exception_message": f"{err.message}\n",
                        "exception_type": err.exception_type,
                        "traceback": [
                            '  File "/opt/ComfyUI/execution.py", line 496, in execute\n',
                            f'  File "fake_comfyui", in {prompt[node_id]["class_type"]}\n',
                        ],
                        "current_inputs": run.current_inputs,
                        "current_outputs": set_order(prompt),
                    },
                    broadcast=False,
                )
                break
            plan.complete(node_id)
        if success:
            await run.message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for node_id in set_order(prompt):
            entry = caches.ui.get(run.sigs[node_id])
            if entry is not None:
                outputs[node_id] = entry["output"]
                meta[node_id] = entry["meta"]
        self.state.last_node_id = None
        status = {"status_str": "success" if success else "error", "completed": success, "messages": run.messages}
        return outputs, meta, status, client_id


class _Run:
    """State of one prompt's execution."""

    def __init__(self, ex: Executor, prompt_id: str, prompt: dict, extra_data: dict, client_id: str | None):
        self.ex = ex
        self.prompt_id = prompt_id
        self.prompt = prompt
        self.extra_data = extra_data
        self.client_id = client_id
        self.messages: list[list] = []
        self.executed: dict[str, None] = {}
        self.progress: dict[str, dict] = {}
        self.current_inputs: dict[str, list] = {}
        self.sigs = self._signatures()

    # --- messages

    async def message(self, event: str, data: dict, broadcast: bool) -> None:
        data = {**data, "timestamp": _ms()}
        self.messages.append([event, data])
        if self.client_id is not None or broadcast:
            await self.ex.hub.send_json(event, data, self.client_id)

    async def to_client(self, event: str, data: dict) -> None:
        if self.client_id is not None:
            await self.ex.hub.send_json(event, data, self.client_id)

    async def _progress_state(self) -> None:
        nodes = {
            node_id: {
                "value": entry["value"],
                "max": entry["max"],
                "state": entry["state"],
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, entry in self.progress.items()
        }
        await self.ex.hub.send_json("progress_state", {"prompt_id": self.prompt_id, "nodes": nodes}, self.client_id)

    async def _start(self, node_id: str) -> None:
        self.progress[node_id] = {"state": "running", "value": 0.0, "max": 1.0}
        await self._progress_state()

    async def _finish(self, node_id: str) -> None:
        entry = self.progress.setdefault(node_id, {"state": "pending", "value": 0, "max": 1})
        entry["state"] = "finished"
        entry["value"] = entry["max"]
        await self._progress_state()

    async def _update(self, node_id: str, value: int, total: int, preview: bytes | None) -> None:
        if self.ex.state.interrupted:
            raise Interrupted
        self.progress[node_id] = {"state": "running", "value": value, "max": total}
        await self._progress_state()
        hub = self.ex.hub
        metadata_ok = hub.supports_metadata(self.client_id)
        if preview is not None and metadata_ok:
            meta = {
                "node_id": node_id,
                "prompt_id": self.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            await hub.send_preview(preview, self.client_id, meta)
        await hub.send_json(
            "progress", {"value": value, "max": total, "prompt_id": self.prompt_id, "node": node_id}, self.client_id
        )
        if preview is not None and not metadata_ok:
            await hub.send_preview(preview, self.client_id, None)

    # --- nodes

    async def node(self, node_id: str) -> None:
        ex, state = self.ex, self.ex.state
        class_type = self.prompt[node_id]["class_type"]
        sig = self.sigs[node_id]
        if sig in state.caches.outputs:
            ui = state.caches.ui.get(sig) or {}
            await self.to_client(
                "executed",
                {"node": node_id, "display_node": node_id, "output": ui.get("output"), "prompt_id": self.prompt_id},
            )
            await self._finish(node_id)
            return
        await self._start(node_id)
        inputs = self._inputs(node_id)
        self.current_inputs = {name: [_format_value(value)] for name, value in inputs.items()}
        if self.client_id is not None:
            state.last_node_id = node_id
        await self.to_client("executing", {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id})
        if state.interrupted:
            raise Interrupted
        ex.counters.node_runs[class_type] += 1
        await self._work(node_id, class_type, inputs)
        failure = ex.config.failure_for(node_id, class_type)
        if failure is not None:
            raise NodeRuntimeError(*failure)
        info = ex.object_info().get(class_type, {})
        if node_id not in state.temp_prefixes:
            state.temp_prefixes[node_id] = temp_prefix()
        ctx = NodeContext(
            node_id=node_id,
            class_type=class_type,
            output_types=[t if isinstance(t, str) else "COMBO" for t in info.get("output", [])],
            prompt=self.prompt,
            extra_pnginfo=self.extra_data.get("extra_pnginfo"),
            dirs=ex.dirs,
            temp_prefix=state.temp_prefixes[node_id],
        )
        result = await asyncio.to_thread(run_node, ctx, inputs)
        for index, image in enumerate(result.ws_images):
            await self._update(node_id, index, len(result.ws_images), png_bytes(image, compress_level=1))
        if result.ui:
            state.caches.ui[sig] = {
                "meta": {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id},
                "output": result.ui,
            }
            await self.to_client(
                "executed", {"node": node_id, "display_node": node_id, "output": result.ui, "prompt_id": self.prompt_id}
            )
        state.caches.outputs[sig] = result.outputs
        await self._finish(node_id)
        self.executed[node_id] = None

    async def _work(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> None:
        """Time spent 'on the GPU': model loads, sampler steps with progress, plain delays."""
        ex, state = self.ex, self.ex.state
        loader_input = MODEL_LOADERS.get(class_type)
        if loader_input is not None:
            name = str(inputs.get(loader_input, ""))
            if name != state.loaded_checkpoint:
                await asyncio.sleep(ex.config.model_load_delays.get(name, ex.config.model_load_delay))
                ex.counters.model_loads[name] += 1
                state.loaded_checkpoint = name
        delay = ex.config.delay_for(node_id, class_type)
        if class_type in SAMPLERS:
            steps_input, default_steps = SAMPLERS[class_type]
            steps = max(1, int(inputs.get(steps_input, default_steps))) if steps_input else default_steps
            for step in range(1, steps + 1):
                await asyncio.sleep(delay / steps)
                preview = None
                if ex.config.sampler_previews:
                    preview = png_bytes(Frames(32, 32, 1, 3, 0x404040 + step).image(), compress_level=1)
                await self._update(node_id, step, steps, preview)
        elif delay > 0:
            await asyncio.sleep(delay)
        if node_id in ex.config.holds or class_type in ex.config.holds:
            released = state.held[node_id] = asyncio.Event()
            ex.on_change()
            try:
                await released.wait()
            finally:
                state.held.pop(node_id, None)

    def _inputs(self, node_id: str) -> dict[str, Any]:
        outputs = self.ex.state.caches.outputs
        values: dict[str, Any] = {}
        for name, value in self.prompt[node_id]["inputs"].items():
            if is_link(value):
                produced = outputs.get(self.sigs[value[0]], ())
                values[name] = produced[value[1]] if value[1] < len(produced) else None
            else:
                values[name] = value
        return values

    def _signatures(self) -> dict[str, str]:
        memo: dict[str, str] = {}
        input_dir = self.ex.dirs["input"]

        def sig(node_id: str, depth: int = 0) -> str:
            if node_id in memo:
                return memo[node_id]
            node = self.prompt[node_id]
            parts: list[Any] = [node.get("class_type")]
            if node.get("class_type") in ALWAYS_CHANGED:
                parts.append(time.time_ns())
            if node.get("class_type") in ("LoadImage", "LoadImageMask"):
                path = input_dir / str(node["inputs"].get("image", ""))
                parts.append(hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing")
            for name in sorted(node.get("inputs", {})):
                value = node["inputs"][name]
                if is_link(value) and value[0] in self.prompt and depth < 1000:
                    parts.append([name, sig(value[0], depth + 1), value[1]])
                else:
                    parts.append([name, json.dumps(value, sort_keys=True, default=str)])
            memo[node_id] = hashlib.sha1(json.dumps(parts).encode(), usedforsecurity=False).hexdigest()
            return memo[node_id]

        for node_id in self.prompt:
            sig(node_id)
        return memo
