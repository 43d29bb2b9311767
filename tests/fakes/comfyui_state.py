"""Knobs, counters and in-memory state (queue, history, caches) of the fake ComfyUI."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_HISTORY = 10_000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


@dataclass
class FakeComfyConfig:
    """Everything a test may tune. Delays are seconds; keep them tiny in tests."""

    node_delay: float = 0.0
    # Per class type or per node id (a node id wins); replaces node_delay for those nodes.
    delays: dict[str, float] = field(default_factory=dict)
    # Node ids or class types that, once started, wait for FakeComfy.release() to finish.
    holds: set[str] = field(default_factory=set)
    # Paid when a loader executes a checkpoint other than the one loaded last.
    model_load_delay: float = 0.0
    model_load_delays: dict[str, float] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    loras: list[str] = field(default_factory=list)
    vaes: list[str] = field(default_factory=list)
    # models/diffusion_models (UNETLoader, LoadFramePackModel), models/text_encoders (CLIPLoader,
    # DualCLIPLoader) and models/clip_vision (CLIPVisionLoader).
    diffusion_models: list[str] = field(default_factory=list)
    text_encoders: list[str] = field(default_factory=list)
    clip_visions: list[str] = field(default_factory=list)
    # Node id or class type -> (exception type, message): that node fails at run time.
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)
    # False emulates a server older than client-chosen prompt ids: it makes up its own.
    honor_prompt_id: bool = True
    # Samplers send a preview frame with each progress step.
    sampler_previews: bool = False
    # Register Video Helper Suite's VHS_VideoCombine (reports files under "gifs").
    video_helper_suite: bool = False
    # Register ComfyUI-FramePackWrapper's nodes (LoadFramePackModel, FramePackSampler, ...).
    framepack: bool = False
    # Further node definitions (/object_info entries) of custom node packs a test needs; they run
    # as generic nodes (outputs passed through from inputs of their type).
    extra_object_info: dict[str, Any] = field(default_factory=dict)
    vram_total: int | None = None
    vram_free: int | None = None
    # Seconds between a prompt's execution_success and its history entry. A real ComfyUI sends the
    # success from its executor and writes the history afterwards, on its worker thread (the
    # prompt stays in the queue's running list until then): a client that reads /history on the
    # success can find nothing (seen on ComfyUI 0.3.64 here). The end marker follows the write.
    history_delay: float = 0.0

    def delay_for(self, node_id: str, class_type: str) -> float:
        if node_id in self.delays:
            return self.delays[node_id]
        return self.delays.get(class_type, self.node_delay)

    def failure_for(self, node_id: str, class_type: str) -> tuple[str, str] | None:
        return self.failures.get(node_id) or self.failures.get(class_type)


@dataclass
class Counters:
    prompts_received: int = 0
    prompts_queued: int = 0
    prompts_rejected: int = 0
    jobs_started: int = 0
    jobs_finished: int = 0
    websockets_opened: int = 0
    max_queued: int = 0  # most prompts pending or running at once
    model_loads: Counter = field(default_factory=Counter)
    node_runs: Counter = field(default_factory=Counter)
    requests: Counter = field(default_factory=Counter)  # "GET /history/{prompt_id}" → how many
    gpu_idle_seconds: float = 0.0
    idle_gaps: list[float] = field(default_factory=list)
    last_job_end: float | None = None

    def job_started(self) -> None:
        now = time.monotonic()
        if self.last_job_end is not None:
            gap = now - self.last_job_end
            self.idle_gaps.append(gap)
            self.gpu_idle_seconds += gap
        self.jobs_started += 1

    def job_finished(self) -> None:
        self.last_job_end = time.monotonic()
        self.jobs_finished += 1


@dataclass
class Caches:
    """ComfyUI's CLASSIC cache: outputs keyed by input signature, kept for the last prompt only."""

    outputs: dict[str, tuple] = field(default_factory=dict)
    ui: dict[str, dict] = field(default_factory=dict)

    def retain(self, keys: set[str]) -> None:
        self.outputs = {k: v for k, v in self.outputs.items() if k in keys}
        self.ui = {k: v for k, v in self.ui.items() if k in keys}

    def clear(self) -> None:
        self.outputs.clear()
        self.ui.clear()


QueueItem = tuple  # (number, prompt_id, prompt, extra_data, outputs_to_execute)


class ServerState:
    def __init__(self) -> None:
        self.number = 0
        self.queue: list[tuple[Any, str, int, QueueItem]] = []  # heap
        self._seq = 0
        self.running: dict[int, QueueItem] = {}
        self.task_counter = 0
        self.history: dict[str, dict] = {}
        self.flags: dict[str, Any] = {}
        self.interrupted = False
        self.paused = False
        self.caches = Caches()
        self.temp_prefixes: dict[str, str] = {}
        self.loaded_checkpoint: str | None = None
        self.executing_client: str | None = None
        self.last_node_id: str | None = None
        self.cond = asyncio.Condition()
        self.held: dict[str, asyncio.Event] = {}

    def put(self, item: QueueItem) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (item[0], item[1], self._seq, item))

    def pop(self) -> tuple[int, QueueItem]:
        _, _, _, item = heapq.heappop(self.queue)
        item_id = self.task_counter
        self.task_counter += 1
        self.running[item_id] = item
        return item_id, item

    def pending_items(self) -> list[QueueItem]:
        return [entry[3] for entry in self.queue]

    def remaining(self) -> int:
        return len(self.queue) + len(self.running)

    def queue_info(self) -> dict:
        return {"exec_info": {"queue_remaining": self.remaining()}}

    def delete_pending(self, prompt_id: str) -> bool:
        for index, entry in enumerate(self.queue):
            if entry[1] == prompt_id:
                self.queue.pop(index)
                heapq.heapify(self.queue)
                return True
        return False

    def finish(self, item_id: int, outputs: dict, meta: dict, status: dict) -> None:
        item = self.running.pop(item_id)
        if len(self.history) > MAX_HISTORY:
            self.history.pop(next(iter(self.history)))
        for key in SENSITIVE_EXTRA_DATA_KEYS:
            item[3].pop(key, None)
        self.history[item[1]] = {"prompt": list(item), "outputs": outputs, "status": status, "meta": meta}

    def get_history(self, max_items: int | None = None, offset: int = -1) -> dict:
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, dict] = {}
        for index, key in enumerate(self.history):
            if index >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return out
