"""The weights registry and manage.py models: present, missing, corrupt, with the command that fixes it."""

from __future__ import annotations

import hashlib
import io
import re

import pytest
from django.core.management import CommandError, call_command

from quality import weights
from quality.metrics.runtime import MetricModels


def test_registry_entries_are_complete():
    filenames = set()
    for model_id, spec in weights.MODELS.items():
        assert spec.id == model_id
        assert spec.url.startswith("https://")
        assert spec.used_by and spec.description
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert spec.filename not in filenames
        filenames.add(spec.filename)
    # every file a metric opens belongs to a registry entry
    for role in (
        weights.CLIP_CHECKPOINT,
        weights.AESTHETIC_HEAD,
        weights.ALEXNET,
        weights.CCIP_FEATURES,
        weights.FACE_DETECTOR,
        weights.FACE_RECOGNIZER,
    ):
        assert role[1] in weights.MODELS[role[0]].files
    assert weights.fetch_command("alexnet") == "python manage.py fetch_models alexnet"


def test_status_missing_present_corrupt_unverified(tmp_path, monkeypatch):
    body = b"weights" * 100
    spec = weights.ModelSpec(
        "t", "t/w.bin", "https://example.invalid/w.bin", hashlib.sha256(body).hexdigest(), len(body), ("x",), "d"
    )
    monkeypatch.setitem(weights.MODELS, "t", spec)
    assert weights.model_status("t", tmp_path).state is weights.State.MISSING
    (tmp_path / "t").mkdir()
    (tmp_path / "t/w.bin").write_bytes(body)
    assert weights.model_status("t", tmp_path).state is weights.State.PRESENT
    (tmp_path / "t/w.bin").write_bytes(body[:-1] + b"X")
    assert weights.model_status("t", tmp_path).state is weights.State.CORRUPT
    assert weights.model_status("t", tmp_path, verify=False).state is weights.State.PRESENT  # same size
    (tmp_path / "t/w.bin").write_bytes(body[:10])
    assert weights.model_status("t", tmp_path, verify=False).state is weights.State.CORRUPT  # wrong size
    monkeypatch.setitem(weights.MODELS, "t", weights.ModelSpec("t", "t/w.bin", spec.url, None, None, ("x",), "d"))
    assert weights.model_status("t", tmp_path).state is weights.State.UNVERIFIED


def test_manage_py_models_lists_states_and_fixes(settings, tmp_path):
    settings.MODELS_DIR = tmp_path
    alexnet = tmp_path / weights.ALEXNET[1]
    alexnet.parent.mkdir(parents=True)
    alexnet.write_bytes(b"not alexnet")
    out = io.StringIO()
    call_command("models", stdout=out)
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()[2:] if line.split()[0] in weights.MODELS}
    assert set(lines) == set(weights.MODELS)
    assert "to fetch every missing model: python manage.py fetch_models" in out.getvalue()
    assert "missing" in lines["ccip"] and "python manage.py fetch_models ccip" in lines["ccip"]
    assert "corrupt" in lines["alexnet"] and "fetch_models alexnet --force" in lines["alexnet"]
    with pytest.raises(CommandError, match="not usable"):
        call_command("models", check=True, stdout=io.StringIO())


def test_metric_paths_are_the_registry_files(tmp_path):
    models = MetricModels(root=tmp_path)
    assert models.path(weights.ALEXNET) == tmp_path / weights.MODELS["alexnet"].filename
