"""Typed ComfyUI WebSocket events and their parsing (JSON text frames and binary previews)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from generation.comfyui.types import OutputFile, parse_outputs

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
_FORMATS = {1: "jpeg", 2: "png"}


@dataclass(frozen=True)
class Status:
    queue_remaining: int
    sid: str | None = None  # only in the first message after (re)connecting


@dataclass(frozen=True)
class FeatureFlags:
    flags: dict[str, Any]


@dataclass(frozen=True)
class ExecutionStart:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionCached:
    prompt_id: str
    nodes: list[str]
    timestamp: int | None = None


@dataclass(frozen=True)
class Executing:
    prompt_id: str | None
    node: str | None  # None is the end marker of the prompt

    @property
    def is_end(self) -> bool:
        return self.node is None


@dataclass(frozen=True)
class Progress:
    prompt_id: str | None
    node: str | None
    value: float
    max: float


@dataclass(frozen=True)
class ProgressState:
    prompt_id: str
    nodes: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Executed:
    prompt_id: str
    node: str
    output: dict[str, Any]
    files: list[OutputFile] = field(default_factory=list)


@dataclass(frozen=True)
class ExecutionSuccess:
    prompt_id: str
    timestamp: int | None = None


@dataclass(frozen=True)
class ExecutionError:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    exception_type: str
    exception_message: str
    traceback: list[str]
    executed: list[str]
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None
    node_type: str | None
    executed: list[str]


@dataclass(frozen=True)
class Preview:
    image: bytes
    format: str  # "jpeg" or "png"
    node_id: str | None = None  # only with preview metadata (type 4 frames)
    prompt_id: str | None = None


@dataclass(frozen=True)
class ProgressText:
    node_id: str
    text: str


@dataclass(frozen=True)
class Disconnected:
    """Not sent by the server: the client lost its socket and is reconnecting."""

    reason: str


@dataclass(frozen=True)
class Unknown:
    type: str
    data: Any


Event = (
    Status
    | FeatureFlags
    | ExecutionStart
    | ExecutionCached
    | Executing
    | Progress
    | ProgressState
    | Executed
    | ExecutionSuccess
    | ExecutionError
    | ExecutionInterrupted
    | Preview
    | ProgressText
    | Disconnected
    | Unknown
)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_text(raw: str) -> Event:
    try:
        message = json.loads(raw)
        kind, data = message["type"], message.get("data") or {}
    except (ValueError, KeyError, TypeError):
        return Unknown("invalid", raw)
    if not isinstance(data, dict):
        return Unknown(str(kind), data)
    pid = _opt(data.get("prompt_id"))
    if kind == "status":
        remaining = (data.get("status") or {}).get("exec_info", {}).get("queue_remaining", 0)
        return Status(int(remaining), _opt(data.get("sid")))
    if kind == "feature_flags":
        return FeatureFlags(data)
    if kind == "execution_start":
        return ExecutionStart(pid or "", data.get("timestamp"))
    if kind == "execution_cached":
        return ExecutionCached(pid or "", [str(n) for n in data.get("nodes", [])], data.get("timestamp"))
    if kind == "executing":
        return Executing(pid, _opt(data.get("node")))
    if kind == "progress":
        return Progress(pid, _opt(data.get("node")), float(data.get("value", 0)), float(data.get("max", 1)))
    if kind == "progress_state":
        return ProgressState(pid or "", data.get("nodes") or {})
    if kind == "executed":
        node = str(data.get("node"))
        output = data.get("output") or {}
        return Executed(pid or "", node, output, parse_outputs(node, output))
    if kind == "execution_success":
        return ExecutionSuccess(pid or "", data.get("timestamp"))
    if kind == "execution_error":
        return ExecutionError(
            prompt_id=pid or "",
            node_id=_opt(data.get("node_id")),
            node_type=_opt(data.get("node_type")),
            exception_type=str(data.get("exception_type", "")),
            exception_message=str(data.get("exception_message", "")),
            traceback=[str(x) for x in data.get("traceback") or []],
            executed=[str(x) for x in data.get("executed") or []],
            raw=data,
        )
    if kind == "execution_interrupted":
        return ExecutionInterrupted(
            pid or "",
            _opt(data.get("node_id")),
            _opt(data.get("node_type")),
            [str(x) for x in data.get("executed") or []],
        )
    return Unknown(str(kind), data)


def parse_binary(raw: bytes) -> Event:
    if len(raw) < 8:
        return Unknown("binary", raw)
    event_type, second = struct.unpack(">II", raw[:8])
    if event_type == PREVIEW_IMAGE:
        return Preview(raw[8:], _FORMATS.get(second, "jpeg"))
    if event_type == PREVIEW_IMAGE_WITH_METADATA:
        try:
            meta = json.loads(raw[8 : 8 + second])
        except ValueError:
            return Unknown("binary", raw)
        mime = str(meta.get("image_type", "image/jpeg"))
        return Preview(
            raw[8 + second :],
            "png" if mime.endswith("png") else "jpeg",
            _opt(meta.get("node_id")),
            _opt(meta.get("prompt_id")),
        )
    if event_type == TEXT:
        node_id = raw[8 : 8 + second].decode("utf-8", "replace")
        return ProgressText(node_id, raw[8 + second :].decode("utf-8", "replace"))
    return Unknown(f"binary:{event_type}", raw)


def event_prompt_id(event: Event) -> str | None:
    return getattr(event, "prompt_id", None)
