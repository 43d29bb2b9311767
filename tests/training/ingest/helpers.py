"""Builders of ingestion inputs (images, archives, videos, ComfyUI PNGs), a stand-in classifier, and running a batch."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, PngImagePlugin

from training.ingest import services, tasks
from training.llm.classify import Classification
from training.models import IngestBatch, IngestStatus


def texture(seed: int, size: int = 96) -> np.ndarray:
    """A distinct, detailed RGB image per seed (pHashes far apart)."""
    rng = np.random.default_rng(seed)
    blocks = (rng.random((8, 8, 3)) * 255).astype("uint8")
    return cv2.resize(blocks, (size, size), interpolation=cv2.INTER_NEAREST)


def png(array: np.ndarray, pnginfo: PngImagePlugin.PngInfo | None = None) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG", pnginfo=pnginfo)
    return out.getvalue()


def near_copy(array: np.ndarray) -> bytes:
    """The same picture, slightly brighter and re-encoded as JPEG: other bytes, same pHash neighbourhood."""
    out = io.BytesIO()
    Image.fromarray(np.clip(array.astype(int) + 6, 0, 255).astype("uint8")).save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


SHOTS = [(230, 40, 40), (40, 200, 60), (50, 70, 230)]
FRAMES_PER_SHOT = 24
BLURRED = {0, 1, 2, 3, 24, 25, 26, 27, 48, 49, 50, 51}  # the first four frames of every shot


def make_video(path: Path, *, size: int = 128, fps: int = 12) -> Path:
    """Three coloured shots with hard cuts, 2 s each; the first four frames of each are blurred."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "16"}
        number = 0
        for shot, colour in enumerate(SHOTS):
            tex = cv2.cvtColor(texture(100 + shot, size), cv2.COLOR_RGB2GRAY)
            for i in range(FRAMES_PER_SHOT):
                frame = (np.full((size, size, 3), colour, "uint8") * 0.5 + tex[..., None] * 0.5).astype("uint8")
                frame = np.roll(frame, i, axis=1)
                if number in BLURRED:
                    frame = cv2.GaussianBlur(frame, (0, 0), 4)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                number += 1
        for packet in stream.encode():
            container.mux(packet)
    return path


def comfy_png(array: np.ndarray, graph: dict, workflow: dict | None = None) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(graph))
    info.add_text("workflow", json.dumps(workflow or {"nodes": [], "links": []}))
    return png(array, info)


def api_graph(positive: str, seed: int) -> dict:
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {"seed": seed, "steps": 20, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0]},
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "anime.safetensors"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "lowres, bad hands", "clip": ["4", 1]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["4", 1]}},
    }


class FakeClassifier:
    """Stands in for training.llm.classify (built by another part); records what it was asked."""

    def __init__(self, decide=None) -> None:
        self.decide = decide or (lambda data, candidates: (candidates[0].pk, 0.9))
        self.calls: list[dict] = []

    def __call__(self, *, project, data, candidates=None):
        self.calls.append({"project": project, "data": data, "candidates": list(candidates or [])})
        character_id, confidence = self.decide(data, list(candidates or []))
        if character_id is None:
            return Classification(character_id=None, confidence=0.0, method="", note="no character recognised")
        return Classification(character_id=character_id, confidence=confidence, method="llm")


def upload(name: str, data: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


def run(batch: IngestBatch) -> IngestBatch:
    assert tasks.ingest_run(batch.pk) in (IngestStatus.SUCCEEDED, IngestStatus.NOTHING_ADDED, IngestStatus.FAILED)
    batch.refresh_from_db()
    return batch


def start_and_run(project, owner, **kwargs) -> IngestBatch:
    return run(services.ingest_batch_start(project=project, user=owner, **kwargs))
