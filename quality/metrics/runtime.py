"""Where the weights are, which device runs them, and each model loaded once per process.

Loaders raise :class:`WeightsMissing` when a file is absent; the metric functions turn that into
an "unavailable" result. A loaded model is cached by (kind, file, its size and mtime, device), so
a re-fetched file is picked up without a restart and a worker never loads the same file twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from quality import weights
from quality.metrics.results import WeightsMissing

logger = logging.getLogger(__name__)
T = TypeVar("T")
_models: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class MetricModels:
    """The models directory (pass ``settings.MODELS_DIR``) and how to read what is in it.

    ``clip_arch`` is the open_clip architecture of the ``clip-vit-l-14`` checkpoint: OpenAI's
    weights were trained with QuickGELU. Tests and the benchmark point it at other architectures.
    ``device``: None picks CUDA when available, else the CPU.
    """

    root: Path
    clip_arch: str = "ViT-L-14-quickgelu"
    device: str | None = None

    def path(self, role: tuple[str, str]) -> Path:
        return Path(self.root) / role[1]

    def require(self, role: tuple[str, str]) -> Path:
        path = self.path(role)
        if not path.is_file():
            raise WeightsMissing(role[0], str(path))
        return path

    @property
    def torch_device(self) -> Any:
        import torch

        if self.device:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cached(key: tuple[Any, ...], path: Path | None, factory: Callable[[], T]) -> T:
    """The process-wide instance for ``key``, built once by ``factory``."""
    if path is not None:
        stat = path.stat()
        key = (*key, str(path), stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key not in _models:
            _models[key] = factory()
        instance: T = _models[key]  # built by this key's factory
        return instance


def clear_cache() -> None:
    with _lock:
        _models.clear()


def loaded_keys() -> list[tuple[Any, ...]]:
    with _lock:
        return list(_models)


CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


def onnx_providers(available: Sequence[str] | None = None) -> list[str]:
    """The providers ONNX sessions get: CUDA first when this onnxruntime build has it, then the CPU.

    ``available`` defaults to ``onnxruntime.get_available_providers()``: the CPU build (``onnxruntime``)
    lists only the CPU; the GPU build (``onnxruntime-gpu``, the ``gpu`` extra) lists CUDA too.
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    return [p for p in (CUDA_PROVIDER, CPU_PROVIDER) if p in available]


def torch_cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def model_device(runtime: str, *, onnx_available: Sequence[str] | None = None, cuda: bool | None = None) -> str:
    """ "CUDA" or "CPU": where a model of ``runtime`` ("torch" or "onnx") runs on this machine."""
    if runtime == "onnx":
        return "CUDA" if CUDA_PROVIDER in onnx_providers(onnx_available) else "CPU"
    return "CUDA" if (torch_cuda_available() if cuda is None else cuda) else "CPU"


def _onnx_session_providers() -> list[str]:
    providers = onnx_providers()
    if CUDA_PROVIDER in providers:
        import onnxruntime

        # The GPU build finds CUDA and cuDNN in the nvidia-* wheels torch installed only once they
        # are loaded (onnxruntime >= 1.21); without them it falls back to the CPU with a warning.
        if hasattr(onnxruntime, "preload_dlls"):
            try:
                onnxruntime.preload_dlls()
            except (OSError, RuntimeError) as exc:
                logger.warning(
                    "onnxruntime could not load the CUDA libraries (%s); ONNX models may run on the CPU", exc
                )
    return providers


# --- torch models -----------------------------------------------------------------------------


def load_lpips(models: MetricModels) -> Any:
    """LPIPS (AlexNet, v0.1): the linear layers from the lpips package, the trunk from our file.

    The file is torchvision's AlexNet state dict (only ``features.*`` is read).
    """
    path = models.require(weights.ALEXNET)

    def build() -> Any:
        import warnings

        import lpips
        import torch

        with warnings.catch_warnings():  # torchvision's notice about lpips' ``pretrained=`` argument
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        slices = [getattr(model.net, f"slice{i}") for i in range(1, model.net.N_slices + 1)]
        loaded = 0
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] != "features":
                continue
            owner = next(s for s in slices if parts[1] in s._modules)
            getattr(owner._modules[parts[1]], parts[2]).data.copy_(value)
            loaded += 1
        if loaded != 10:  # five convolutions, weight and bias each
            raise ValueError(f"{path} is not an AlexNet state dict ({loaded} trunk tensors)")
        return model.eval().to(models.torch_device)

    return cached(("lpips",), path, build)


def load_clip(models: MetricModels) -> tuple[Any, Any]:
    """(open_clip model, its image preprocessing) from the local checkpoint; never downloads."""
    path = models.require(weights.CLIP_CHECKPOINT)

    def build() -> tuple[Any, Any]:
        import open_clip

        model, _, preprocess = open_clip.create_model_and_transforms(
            models.clip_arch, pretrained=str(path), device=models.torch_device
        )
        return model.eval(), preprocess

    return cached(("clip", models.clip_arch), path, build)


def load_aesthetic_head(models: MetricModels, dim: int) -> Any:
    path = models.require(weights.AESTHETIC_HEAD)

    def build() -> Any:
        import torch

        from quality.metrics.aesthetic import AestheticHead

        head = AestheticHead(dim)
        head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return head.eval().to(models.torch_device)

    return cached(("aesthetic", dim), path, build)


# --- ONNX models ------------------------------------------------------------------------------


def load_ccip(models: MetricModels) -> Any:
    path = models.require(weights.CCIP_FEATURES)

    def build() -> Any:
        import onnxruntime

        return onnxruntime.InferenceSession(str(path), providers=_onnx_session_providers())

    return cached(("ccip",), path, build)


def load_face_detector(models: MetricModels) -> Any:
    path = models.require(weights.FACE_DETECTOR)

    def build() -> Any:
        from insightface.model_zoo import get_model

        detector = get_model(str(path), providers=_onnx_session_providers())
        if detector is None or getattr(detector, "taskname", "") != "detection":
            raise ValueError(f"{path} is not an insightface detection model")
        detector.prepare(ctx_id=0 if CUDA_PROVIDER in onnx_providers() else -1, det_thresh=0.5)
        return detector

    return cached(("face_detector",), path, build)


def load_face_recognizer(models: MetricModels) -> Any:
    path = models.require(weights.FACE_RECOGNIZER)

    def build() -> Any:
        from insightface.model_zoo import get_model

        recognizer = get_model(str(path), providers=_onnx_session_providers())
        if recognizer is None or getattr(recognizer, "taskname", "") != "recognition":
            raise ValueError(f"{path} is not an insightface recognition model")
        return recognizer

    return cached(("face_recognizer",), path, build)
