"""Where the scoring models run: CUDA when the runtime offers it (GPU build of onnxruntime, torch with
CUDA), else the CPU; ``manage.py models`` says which for each model.

The provider list is injected (it is what ``onnxruntime.get_available_providers()`` answers); this
machine has no GPU and the CPU build, so the real answer here is CPU.
"""

from __future__ import annotations

import io

import onnxruntime
import pytest
import torch
from django.core.management import call_command

from quality import weights
from quality.metrics.runtime import MetricModels, model_device, onnx_providers

GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_BUILD = ["AzureExecutionProvider", "CPUExecutionProvider"]


def models_output(settings, tmp_path) -> dict[str, str]:
    settings.MODELS_DIR = tmp_path
    out = io.StringIO()
    call_command("models", stdout=out)
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines() if line.split()[0] in weights.MODELS}
    return {"text": out.getvalue(), **{model_id: row[2] for model_id, row in rows.items()}}


def test_onnx_sessions_get_cuda_first_when_the_gpu_build_offers_it():
    assert onnx_providers(GPU_BUILD) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert onnx_providers(CPU_BUILD) == ["CPUExecutionProvider"]
    assert model_device("onnx", onnx_available=GPU_BUILD) == "CUDA"
    assert model_device("onnx", onnx_available=CPU_BUILD) == "CPU"
    assert model_device("torch", cuda=True) == "CUDA"
    assert model_device("torch", cuda=False) == "CPU"


def test_this_machine_runs_everything_on_the_cpu(settings, tmp_path):
    assert onnx_providers() == ["CPUExecutionProvider"]  # the CPU build is what Tower installs here
    assert MetricModels(root=tmp_path).torch_device.type == "cpu"
    devices = models_output(settings, tmp_path)
    assert {devices[model_id] for model_id in weights.MODELS} == {"CPU"}
    assert "CPU build" in devices["text"] and "GPU=1" in devices["text"]  # how to get the GPU build


@pytest.mark.parametrize("cuda_for_torch", [False, True])
def test_manage_py_models_names_cuda_for_onnx_models_when_the_provider_list_has_it(
    settings, tmp_path, monkeypatch, cuda_for_torch
):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(GPU_BUILD))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_for_torch)

    devices = models_output(settings, tmp_path)

    onnx = [i for i, spec in weights.MODELS.items() if spec.runtime == "onnx"]
    assert sorted(onnx) == ["buffalo_l", "ccip"]  # ArcFace (+ its detector) and CCIP
    assert {devices[i] for i in onnx} == {"CUDA"}
    torch_models = set(weights.MODELS) - set(onnx)
    assert {devices[i] for i in torch_models} == {"CUDA" if cuda_for_torch else "CPU"}
    assert "CPU build" not in devices["text"]
