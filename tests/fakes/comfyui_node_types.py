"""The fake ComfyUI's node values (tokens, latents, videos), what a behaviour gets and returns, and the
registry of behaviours by node class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tests.fakes.comfyui_media import Frames


class NodeRuntimeError(Exception):
    """A failure inside a node, reported as execution_error with this type name and message."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type
        self.message = message


@dataclass(frozen=True)
class Token:
    """An opaque value (MODEL, CLIP, CONDITIONING, ...) with what it came from."""

    type: str
    name: str = ""


@dataclass(frozen=True)
class Latent:
    width: int
    height: int
    count: int = 1


@dataclass(frozen=True)
class Video:
    frames: Frames
    fps: float


@dataclass
class NodeContext:
    """What a behaviour may use besides its inputs."""

    node_id: str
    class_type: str
    output_types: list[str]
    prompt: dict
    extra_pnginfo: dict | None
    dirs: dict[str, Path]  # input, output, temp
    temp_prefix: str = ""


@dataclass
class NodeResult:
    outputs: tuple[Any, ...]
    ui: dict | None = None
    ws_images: list[Image.Image] = field(default_factory=list)  # SaveImageWebsocket frames


Behaviour = Callable[[NodeContext, dict[str, Any]], NodeResult]
BEHAVIOURS: dict[str, Behaviour] = {}


def behaviour(*names: str) -> Callable[[Behaviour], Behaviour]:
    def register(fn: Behaviour) -> Behaviour:
        for name in names:
            BEHAVIOURS[name] = fn
        return fn

    return register


def first_input(inputs: dict[str, Any], kind: type) -> Any:
    for value in inputs.values():
        if isinstance(value, kind):
            return value
    return None
