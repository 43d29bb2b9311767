"""Typed views of ComfyUI's REST answers, parsed strictly enough to catch a wrong server."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Literal

from generation.comfyui.errors import ComfyProtocolError

OutputKind = Literal["image", "animation", "video"]
VIDEO_EXTENSIONS = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"}
# Keys under which nodes report files: core nodes use "images"; video nodes often "gifs"/"videos".
FILE_KEYS = ("images", "gifs", "videos")


class PromptStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"


def _require(data: Any, kind: type, what: str) -> Any:
    if not isinstance(data, kind):
        raise ComfyProtocolError(f"{what}: expected {kind.__name__}, got {type(data).__name__}")
    return data


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    vram_total: int
    vram_free: int
    torch_vram_total: int
    torch_vram_free: int


@dataclass(frozen=True)
class SystemStats:
    comfyui_version: str
    python_version: str
    devices: list[Device]

    @property
    def vram_used_fraction(self) -> float:
        """Share of VRAM in use over all devices (0.0 when the server reports none)."""
        total = sum(d.vram_total for d in self.devices)
        free = sum(d.vram_free for d in self.devices)
        return 0.0 if total <= 0 else max(0.0, min(1.0, (total - free) / total))

    @classmethod
    def from_json(cls, data: Any) -> SystemStats:
        data = _require(data, dict, "system_stats")
        system = _require(data.get("system"), dict, "system_stats.system")
        devices = [
            Device(
                name=str(d.get("name", "")),
                type=str(d.get("type", "")),
                vram_total=int(d.get("vram_total") or 0),
                vram_free=int(d.get("vram_free") or 0),
                torch_vram_total=int(d.get("torch_vram_total") or 0),
                torch_vram_free=int(d.get("torch_vram_free") or 0),
            )
            for d in _require(data.get("devices", []), list, "system_stats.devices")
        ]
        return cls(str(system.get("comfyui_version", "")), str(system.get("python_version", "")), devices)


@dataclass(frozen=True)
class QueueState:
    running: list[str]
    pending: list[str]

    @classmethod
    def from_json(cls, data: Any) -> QueueState:
        data = _require(data, dict, "queue")

        def ids(key: str) -> list[str]:
            items = _require(data.get(key, []), list, f"queue.{key}")
            return [str(item[1]) for item in items if isinstance(item, list) and len(item) > 1]

        return cls(running=ids("queue_running"), pending=ids("queue_pending"))

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self.running or prompt_id in self.pending


@dataclass(frozen=True)
class OutputFile:
    node_id: str
    filename: str
    subfolder: str
    type: str  # output | temp | input
    kind: OutputKind

    @property
    def extension(self) -> str:
        return PurePosixPath(self.filename).suffix.lower()


def parse_outputs(node_id: str, output: Any) -> list[OutputFile]:
    """Files one node reported (in ``executed`` or history), with their kind guessed."""
    if not isinstance(output, dict):
        return []
    animated = output.get("animated") or []
    files = []
    for key in FILE_KEYS:
        for index, item in enumerate(output.get(key) or []):
            if not isinstance(item, dict) or "filename" not in item:
                continue
            name = str(item["filename"])
            ext = PurePosixPath(name).suffix.lower()
            is_animated = bool(animated[index]) if index < len(animated) else False
            if ext in VIDEO_EXTENSIONS:
                kind: OutputKind = "video"
            elif key != "images" or is_animated or ext == ".gif":
                kind = "animation"
            else:
                kind = "image"
            files.append(
                OutputFile(node_id, name, str(item.get("subfolder", "")), str(item.get("type", "output")), kind)
            )
    return files


@dataclass(frozen=True)
class HistoryEntry:
    prompt_id: str
    status_str: str | None
    completed: bool
    outputs: list[OutputFile]
    messages: list[tuple[str, dict[str, Any]]]
    raw_outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def interrupted(self) -> bool:
        return any(event == "execution_interrupted" for event, _ in self.messages)

    @property
    def failure(self) -> dict[str, Any] | None:
        """The execution_error or execution_interrupted message, if the prompt did not succeed."""
        for event, data in self.messages:
            if event in ("execution_error", "execution_interrupted"):
                return data
        return None

    @property
    def status(self) -> PromptStatus:
        if self.status_str == "error" or (self.status_str is None and self.failure):
            return PromptStatus.INTERRUPTED if self.interrupted else PromptStatus.ERROR
        return PromptStatus.DONE

    @classmethod
    def from_json(cls, prompt_id: str, data: Any) -> HistoryEntry:
        data = _require(data, dict, "history entry")
        status = data.get("status") or {}
        raw_outputs = _require(data.get("outputs") or {}, dict, "history outputs")
        outputs = [f for node_id, out in raw_outputs.items() for f in parse_outputs(str(node_id), out)]
        messages = [
            (str(m[0]), m[1] if isinstance(m[1], dict) else {})
            for m in status.get("messages") or []
            if isinstance(m, list | tuple) and len(m) == 2
        ]
        return cls(
            prompt_id=prompt_id,
            status_str=status.get("status_str"),
            completed=bool(status.get("completed", False)),
            outputs=outputs,
            messages=messages,
            raw_outputs=raw_outputs,
        )


@dataclass(frozen=True)
class PromptAccepted:
    prompt_id: str
    number: float
    node_errors: dict[str, Any]
    # None when no prompt id was proposed; False when an older server chose its own.
    prompt_id_honored: bool | None = None


@dataclass(frozen=True)
class UploadedImage:
    name: str
    subfolder: str
    type: str

    @property
    def reference(self) -> str:
        """The value a LoadImage node takes for this file."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name


@dataclass(frozen=True)
class ServerFeatures:
    supports_preview_metadata: bool
    max_upload_size: int | None
    jobs_api: bool
