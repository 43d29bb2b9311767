"""ComfyUI-FramePackWrapper's nodes for the fake ComfyUI (``FakeComfy(framepack=True)``).

The /object_info entries follow the pack's ``INPUT_TYPES`` (github.com/kijai/ComfyUI-FramePackWrapper,
nodes.py); model lists are the server's files (``diffusion_models``). The sampler is not run: it
returns a latent of as many frames as the real one renders (``round(seconds * 30 / (window * 4))``
sections, at least one, each of ``window`` latents, plus the start latent; the HunyuanVideo VAE
decodes ``n`` latents to ``(n - 1) * 4 + 1`` frames), which VAEDecodeTiled turns into a fill.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.comfyui_node_types import Latent, NodeContext, NodeResult, Token, behaviour

_PACK = "custom_nodes.ComfyUI-FramePackWrapper"


def _entry(name: str, required: dict[str, Any], optional: dict[str, Any], output: list[str], names: list[str]) -> dict:
    return {
        "input": {"required": required, "optional": optional},
        "input_order": {"required": list(required), "optional": list(optional)},
        "output": output,
        "output_is_list": [False] * len(output),
        "output_name": names,
        "name": name,
        "display_name": name,
        "description": "",
        "python_module": _PACK,
        "category": "FramePackWrapper",
        "output_node": False,
    }


def framepack_object_info(models: list[str]) -> dict[str, Any]:
    """The pack's node definitions; ``models`` are the files in models/diffusion_models."""
    attention = [["sdpa", "flash_attn", "sageattn"], {"default": "sdpa"}]
    quantization = [["disabled", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"], {"default": "disabled"}]
    return {
        "LoadFramePackModel": _entry(
            "LoadFramePackModel",
            {
                "model": [list(models), {}],
                "base_precision": [["fp32", "bf16", "fp16"], {"default": "bf16"}],
                "quantization": quantization,
                "load_device": [["main_device", "offload_device"], {"default": "cuda"}],
            },
            {"attention_mode": attention, "compile_args": ["FRAMEPACKCOMPILEARGS"], "lora": ["HYVIDLORA"]},
            ["FramePackMODEL"],
            ["model"],
        ),
        "FramePackSampler": _entry(
            "FramePackSampler",
            {
                "model": ["FramePackMODEL"],
                "positive": ["CONDITIONING"],
                "negative": ["CONDITIONING"],
                "image_embeds": ["CLIP_VISION_OUTPUT"],
                "steps": ["INT", {"default": 30, "min": 1}],
                "use_teacache": ["BOOLEAN", {"default": True}],
                "teacache_rel_l1_thresh": ["FLOAT", {"default": 0.15, "min": 0.0, "max": 1.0, "step": 0.01}],
                "cfg": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 30.0, "step": 0.01}],
                "guidance_scale": ["FLOAT", {"default": 10.0, "min": 0.0, "max": 32.0, "step": 0.01}],
                "shift": ["FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.01}],
                "seed": ["INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}],
                "latent_window_size": ["INT", {"default": 9, "min": 1, "max": 33, "step": 1}],
                "total_second_length": ["FLOAT", {"default": 5, "min": 1, "max": 120, "step": 0.1}],
                "gpu_memory_preservation": ["FLOAT", {"default": 6.0, "min": 0.0, "max": 128.0, "step": 0.1}],
                "sampler": [["unipc_bh1", "unipc_bh2"], {"default": "unipc_bh1"}],
            },
            {
                "start_latent": ["LATENT"],
                "end_latent": ["LATENT"],
                "end_image_embeds": ["CLIP_VISION_OUTPUT"],
                "embed_interpolation": [["disabled", "weighted_average", "linear"], {"default": "disabled"}],
                "start_embed_strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
                "initial_samples": ["LATENT"],
                "denoise_strength": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
            },
            ["LATENT"],
            ["samples"],
        ),
        "FramePackFindNearestBucket": _entry(
            "FramePackFindNearestBucket",
            {"image": ["IMAGE"], "base_resolution": ["INT", {"default": 640, "min": 64, "max": 2048, "step": 16}]},
            {},
            ["INT", "INT"],
            ["width", "height"],
        ),
    }


@behaviour("LoadFramePackModel")
def _load_model(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    return NodeResult((Token("FramePackMODEL", str(i.get("model", ""))),))


@behaviour("FramePackSampler")
def _sampler(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    start = i.get("start_latent")
    width, height = (start.width, start.height) if isinstance(start, Latent) else (512, 512)
    window = int(i.get("latent_window_size", 9))
    sections = max(round(float(i.get("total_second_length", 5)) * 30 / (window * 4)), 1)
    latents = 1 + sections * window
    return NodeResult((Latent(width, height, (latents - 1) * 4 + 1),))
