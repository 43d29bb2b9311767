"""Tiny models with the real files' shapes, built by the tests (no download): a models directory.

``tiny_models()`` builds them once per test process, in a temporary directory removed at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import warnings
from functools import cache
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_CLIP = "tower-tiny-clip"


def build_alexnet(path: Path) -> None:
    import torch
    import torchvision

    torch.manual_seed(0)
    trunk = torchvision.models.alexnet(weights=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The loader reads only ``features.*``; the classifier would add 230 MB for nothing.
    torch.save({k: v for k, v in trunk.state_dict().items() if k.startswith("features.")}, path)


def register_tiny_clip(config_dir: Path) -> str:
    import open_clip

    config = {
        "embed_dim": 768,  # what the LAION head takes
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / f"{TINY_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(config_dir / f"{TINY_CLIP}.json")
    return TINY_CLIP


def build_clip(path: Path, arch: str) -> None:
    import open_clip
    import torch

    torch.manual_seed(1)
    model, _, _ = open_clip.create_model_and_transforms(arch, pretrained=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)


def build_aesthetic_head(path: Path) -> None:
    import torch

    from quality.metrics.aesthetic import AestheticHead

    torch.manual_seed(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(AestheticHead(768).state_dict(), path)


def build_arcface(path: Path) -> None:
    """ArcFace-shaped: 1×3×112×112 → 1×512, input ``input.1``, a non-numeric output name."""
    import torch
    from torch import nn

    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 8, stride=8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 512)
    ).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        net, torch.zeros(1, 3, 112, 112), str(path), input_names=["input.1"], output_names=["embedding"], dynamo=False
    )


class _Scrfd:
    """SCRFD-shaped detector (9 outputs, strides 8/16/32, 2 anchors, keypoints): it 'sees' a face
    wherever the image is bright, with a box three strides wide, so tests know where faces are."""

    @staticmethod
    def build(path: Path, size: int = 128) -> None:
        import torch
        from torch import nn

        class Net(nn.Module):
            def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
                scores, boxes, kps = [], [], []
                for stride in (8, 16, 32):
                    v = nn.functional.avg_pool2d(x.mean(dim=1, keepdim=True), stride)  # 1×1×h×w in [-1, 1]
                    s = torch.sigmoid(12 * (v - 0.5)).flatten().repeat_interleave(2).unsqueeze(1)
                    n = s.shape[0]
                    scores.append(s)
                    boxes.append(torch.full((n, 4), 1.5) + 0 * s)
                    k = torch.tensor([-0.5, -0.4, 0.5, -0.4, 0.0, 0.0, -0.4, 0.5, 0.4, 0.5]).repeat(n, 1)
                    kps.append(k + 0 * s)
                return (*scores, *boxes, *kps)

        names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in (8, 16, 32)]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(
            Net(), torch.zeros(1, 3, size, size), str(path), input_names=["input.1"], output_names=names, dynamo=False
        )


def build_ccip(path: Path) -> None:
    """CCIP-shaped: N×3×384×384 → N×768, input ``input``, output ``output``."""
    import torch
    from torch import nn

    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 16, stride=16), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 768)
    ).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        net,
        torch.zeros(2, 3, 384, 384),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        dynamo=False,
    )


@cache
def tiny_models() -> Any:  # MetricModels
    """A models directory holding every model, each tiny, at the registry's file names."""
    from quality import weights
    from quality.metrics import MetricModels

    root = Path(tempfile.mkdtemp(prefix="tower-tiny-models-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    arch = register_tiny_clip(root / "configs")
    with warnings.catch_warnings():  # torch's notice that the TorchScript ONNX exporter is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        build_alexnet(root / weights.ALEXNET[1])
        build_clip(root / weights.CLIP_CHECKPOINT[1], arch)
        build_aesthetic_head(root / weights.AESTHETIC_HEAD[1])
        build_arcface(root / weights.FACE_RECOGNIZER[1])
        _Scrfd.build(root / weights.FACE_DETECTOR[1])
        build_ccip(root / weights.CCIP_FEATURES[1])
    return MetricModels(root=root, clip_arch=arch, device="cpu")
