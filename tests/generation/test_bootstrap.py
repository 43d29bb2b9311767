"""What a studio's start loads from generation: backends from ``COMFYUI_URLS``, shipped templates.

``manage.py serve`` prints these lines at start-up (tests/tower/test_serve.py runs the command).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from generation.models import Backend, WorkflowTemplate
from generation.services.backends import BackendError
from generation.services.bootstrap import seed_backends, sync_shipped_templates

ROOT = Path(__file__).resolve().parents[2]


# --- COMFYUI_URLS --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_comfyui_urls_become_backends_named_host_port_on_first_start(settings):
    settings.COMFYUI_VRAM_HOLD = 0.9

    names = seed_backends(urls=["http://gpu-1.local:8188", "https://comfy.studio.example/"])

    assert names == ["gpu-1.local:8188", "comfy.studio.example:443"]
    backends = {backend.name: backend for backend in Backend.objects.all()}
    assert backends["gpu-1.local:8188"].url == "http://gpu-1.local:8188"
    assert backends["comfy.studio.example:443"].url == "https://comfy.studio.example"
    assert all(backend.enabled and backend.vram_hold_threshold == 0.9 for backend in backends.values())


@pytest.mark.django_db
def test_comfyui_urls_are_ignored_once_backends_exist():
    seed_backends(urls=["http://gpu-1.local:8188"])

    assert seed_backends(urls=["http://gpu-2.local:8188"]) == []
    assert list(Backend.objects.values_list("name", flat=True)) == ["gpu-1.local:8188"]


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["gpu-1.local:8188", "ftp://gpu-1.local", "http://gpu-1.local:99999"])
def test_a_bad_comfyui_url_is_refused_naming_it(url):
    with pytest.raises(BackendError, match=f"COMFYUI_URLS: {re.escape(repr(url))}"):
        seed_backends(urls=[url])

    assert not Backend.objects.exists()


# --- Shipped workflow templates ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_up_loads_the_shipped_templates_in_one_line():
    line = sync_shipped_templates()

    shipped = WorkflowTemplate.objects.filter(project__isnull=True, source=WorkflowTemplate.Source.SHIPPED)
    assert shipped.filter(slug="txt2img-sd15").exists()
    assert line == f"{shipped.count()} shipped templates ({shipped.count()} new, 0 updated)"
    assert sync_shipped_templates() == f"{shipped.count()} shipped templates"  # nothing new the second time


@pytest.mark.django_db
def test_an_invalid_template_file_is_named_and_the_others_still_load(tmp_path):
    (tmp_path / "weightless-image.json").write_text((ROOT / "workflows" / "weightless-image.json").read_text())
    (tmp_path / "broken.json").write_text("{ not json")

    line = sync_shipped_templates(folder=tmp_path)

    assert "\n" not in line
    assert line.startswith("1 shipped templates (1 new, 0 updated); 1 invalid, skipped: broken.json")
    assert WorkflowTemplate.objects.filter(slug="weightless-image").exists()


@pytest.mark.django_db
def test_a_missing_workflows_folder_does_not_stop_start_up(tmp_path):
    assert sync_shipped_templates(folder=tmp_path / "gone").startswith("not loaded: no workflows folder at")
