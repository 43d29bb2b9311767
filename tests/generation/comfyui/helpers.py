"""Graphs and a run-and-follow helper shared by the ComfyUI client tests."""

from __future__ import annotations

from typing import Any

from generation.comfyui import ComfyClient
from generation.comfyui.events import Event


def images_graph(prefix: str = "t", color: int = 0x336699, batch: int = 2) -> dict[str, Any]:
    """Weightless nodes only: stills, an animated WebP, a preview, an MP4 and a VHS video."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": batch, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
        "3": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": f"{prefix}_anim",
                "fps": 6.0,
                "lossless": False,
                "quality": 80,
                "method": "default",
            },
        },
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "5": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
        "6": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["5", 0], "filename_prefix": f"video/{prefix}", "format": "mp4", "codec": "h264"},
        },
        "7": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8,
                "loop_count": 0,
                "filename_prefix": f"{prefix}_vhs",
                "format": "video/h264-mp4",
                "pingpong": False,
                "save_output": True,
            },
        },
    }


def txt2img(ckpt: str, seed: int = 1, steps: int = 4, prefix: str = "gen") -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "kai, portrait", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


async def run(client: ComfyClient, graph: dict[str, Any], **submit: Any) -> tuple[str, list[Event]]:
    async with client.events() as stream:
        accepted = await client.submit(graph, **submit)
        events = [e async for e in client.follow(accepted.prompt_id, stream=stream, timeout=15)]
    return accepted.prompt_id, events


async def collect(events: Any) -> list[Event]:
    return [e async for e in events]
