"""Client for ComfyUI servers: REST calls, typed WebSocket events and prompt following."""

from __future__ import annotations

from generation.comfyui.client import ComfyClient
from generation.comfyui.errors import (
    ComfyError,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyNotFound,
    ComfyPromptLost,
    ComfyProtocolError,
    ComfyRejected,
    ComfyUnreachable,
)
from generation.comfyui.types import (
    Device,
    HistoryEntry,
    OutputFile,
    PromptAccepted,
    PromptStatus,
    QueueState,
    SystemStats,
    UploadedImage,
)

__all__ = [
    "ComfyClient",
    "ComfyError",
    "ComfyExecutionError",
    "ComfyInterrupted",
    "ComfyNotFound",
    "ComfyPromptLost",
    "ComfyProtocolError",
    "ComfyRejected",
    "ComfyUnreachable",
    "Device",
    "HistoryEntry",
    "OutputFile",
    "PromptAccepted",
    "PromptStatus",
    "QueueState",
    "SystemStats",
    "UploadedImage",
]
