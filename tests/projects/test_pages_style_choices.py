"""The project style page names checkpoints, VAEs, samplers, schedulers and LoRAs from what the
enabled backends list (their cached /object_info, from the fake ComfyUI on a real port); a stored
name no backend offers stays selected and marked, never silently dropped."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from projects.models import Project
from tests.fakes.comfyui import FakeComfy
from tests.generation.engine_helpers import backend_for

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def offered(tmp_path):
    with FakeComfy(
        root=tmp_path / "comfy",
        checkpoints=["anime_v1.safetensors", "Pony/xl_v6.safetensors"],
        loras=["kai_v2.safetensors", "style/ink.safetensors"],
        vaes=["kl-f8-anime.safetensors"],
    ) as fake:
        yield backend_for(fake)


def select(html: str, name: str) -> str:
    match = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert match, f"no select named {name}"
    return match[1]


def selected(html: str, name: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)"[^>]*selected', select(html, name))


def style_rows(**changes) -> dict:
    data = {
        "checkpoint": "Pony/xl_v6.safetensors",
        "vae": "kl-f8-anime.safetensors",
        "sampler": "dpmpp_2m",
        "scheduler": "karras",
        "width": 512,
        "height": 768,
        "clip_skip": 2,
        "fps": 12,
        "style_prompt": "",
        "negative_prompt": "",
        "lora_name": ["kai_v2.safetensors", "style/ink.safetensors"],
        "lora_strength": ["0.6", ""],
        "draft_steps": 10,
        "draft_cfg": 6,
        "draft_denoise": 0.7,
        "production_steps": 30,
        "production_cfg": 7.5,
        "production_denoise": 1,
    }
    return {**data, **changes}


def test_the_style_names_are_selects_of_what_the_backends_offer(owner, project, offered):
    style = project.style
    style.checkpoint, style.loras = "retired_v0.safetensors", [{"name": "gone.safetensors", "strength": 0.5}]
    style.save()
    html = client_for(owner).get(reverse("project-detail", args=[project.pk])).text
    assert "Pony/xl_v6.safetensors" in select(html, "checkpoint")
    assert selected(html, "checkpoint") == ["retired_v0.safetensors"]
    assert "retired_v0.safetensors (not offered by any enabled backend)" in select(html, "checkpoint")
    assert "kl-f8-anime.safetensors" in select(html, "vae") and selected(html, "vae") == [""]
    assert "dpmpp_2m" in select(html, "sampler") and "karras" in select(html, "scheduler")
    assert "kai_v2.safetensors" in select(html, "lora_name")
    assert "gone.safetensors (not offered by any enabled backend)" in html
    assert 'name="loras_text"' not in html


def test_rows_of_loras_and_chosen_names_are_saved(owner, project, offered):
    response = client_for(owner).post(reverse("project-style", args=[project.pk]), style_rows())
    assert response.status_code == 302
    style = Project.objects.get(pk=project.pk).style
    assert (style.checkpoint, style.vae, style.sampler, style.scheduler) == (
        "Pony/xl_v6.safetensors",
        "kl-f8-anime.safetensors",
        "dpmpp_2m",
        "karras",
    )
    assert style.loras == [
        {"name": "kai_v2.safetensors", "strength": 0.6},
        {"name": "style/ink.safetensors", "strength": 1.0},
    ]
    # A value kept while no backend offers it saves as it was.
    kept = style_rows(checkpoint="retired_v0.safetensors", lora_name=[], lora_strength=[])
    assert client_for(owner).post(reverse("project-style", args=[project.pk]), kept).status_code == 302
    style.refresh_from_db()
    assert style.checkpoint == "retired_v0.safetensors" and style.loras == []


def test_a_bad_strength_is_refused_inline(owner, project, offered):
    response = client_for(owner).post(
        reverse("project-style", args=[project.pk]), style_rows(lora_strength=["strong", "1"])
    )
    assert response.status_code == 400 and "not a number" in response.text
    assert Project.objects.get(pk=project.pk).style.loras == []


def test_without_known_nodes_the_names_stay_free_text(owner, project):
    html = client_for(owner).get(reverse("project-detail", args=[project.pk])).text
    assert re.search(r'<input type="text" name="checkpoint"', html)
    assert re.search(r'<input type="text" name="lora_name"', html) or "no enabled backend has listed its LoRAs" in html


def test_outsiders_get_404(outsider, project, offered):
    client = client_for(outsider)
    assert client.get(reverse("project-detail", args=[project.pk])).status_code == 404
    assert client.post(reverse("project-style", args=[project.pk]), style_rows()).status_code == 404
    assert Project.objects.get(pk=project.pk).style.loras == []
