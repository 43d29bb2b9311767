"""The Generate page's per-job controls: chosen from what the backends offer (their cached
/object_info, through the fake ComfyUI on a real port), defaulting to the project's style preset,
and only the fields a person changes recorded on the job as overrides."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from generation.choices import backend_choices
from generation.models import Job
from tests.generation.engine_helpers import backend_for, shipped

pytestmark = pytest.mark.django_db

CHECKPOINTS = ["anime_v1.safetensors", "Pony/xl_v6.safetensors"]
LORAS = ["kai_v2.safetensors", "style/ink.safetensors"]
VAES = ["kl-f8-anime.safetensors"]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def offered(fake):
    fake.configure(checkpoints=CHECKPOINTS, loras=LORAS, vaes=VAES)
    return backend_for(fake)


def select(html: str, name: str) -> str:
    match = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert match, f"no select named {name}"
    return match[1]


def options(html: str, name: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)"', select(html, name))


def selected(html: str, name: str) -> str:
    found = re.findall(r'<option value="([^"]*)"[^>]*selected', select(html, name))
    assert len(found) == 1, (name, found)
    return found[0]


def style(project, **fields):
    s = project.style
    for key, value in fields.items():
        setattr(s, key, value)
    s.save()
    return s


def post_form(project, template, **fields) -> dict:
    """What the page posts when nothing is touched: every control at the style's draft default."""
    s = project.style
    data = {
        "project": project.pk,
        "template": template.pk,
        "mode": "draft",
        "count": 1,
        "seed": "",
        "checkpoint": s.checkpoint,
        "vae": s.vae,
        "sampler": s.sampler,
        "scheduler": s.scheduler,
        "steps": s.draft_steps,
        "cfg": s.draft_cfg,
        "width": s.width,
        "height": s.height,
        "lora_name": [item["name"] for item in s.loras],
        "lora_strength": [item["strength"] for item in s.loras],
    }
    data.update(fields)
    return data


def test_backend_choices_are_the_union_of_enabled_backends(offered, fake):
    choices = backend_choices()
    assert choices["checkpoints"] == sorted(CHECKPOINTS, key=str.lower)
    assert choices["loras"] == sorted(LORAS, key=str.lower)
    assert "kl-f8-anime.safetensors" in choices["vaes"]
    assert {"euler", "dpmpp_2m"} <= set(choices["samplers"]) and "karras" in choices["schedulers"]
    offered.enabled = False
    offered.save(update_fields=["enabled"])
    assert backend_choices() == {"checkpoints": [], "vaes": [], "samplers": [], "schedulers": [], "loras": []}


def test_the_selects_list_the_backends_values_and_default_to_the_style(owner, project, offered):
    style(project, checkpoint="anime_v1.safetensors", sampler="dpmpp_2m", scheduler="karras", draft_steps=14)
    template = shipped("weightless-image")
    html = client_for(owner).get(reverse("generate"), {"project": project.pk, "template": template.pk}).text
    assert set(CHECKPOINTS) <= set(options(html, "checkpoint"))
    assert selected(html, "checkpoint") == "anime_v1.safetensors"
    assert selected(html, "sampler") == "dpmpp_2m" and "euler_ancestral" in options(html, "sampler")
    assert selected(html, "scheduler") == "karras"
    assert "kl-f8-anime.safetensors" in options(html, "vae") and selected(html, "vae") == ""
    assert set(LORAS) <= set(options(html, "lora_name"))
    assert re.search(r'name="steps" value="14"', html)
    assert "data-free-text" not in html


def test_a_style_value_no_backend_offers_stays_selected_and_marked(owner, project, offered):
    style(project, checkpoint="retired_v0.safetensors", loras=[{"name": "gone.safetensors", "strength": 0.7}])
    html = client_for(owner).get(reverse("generate"), {"project": project.pk}).text
    assert selected(html, "checkpoint") == "retired_v0.safetensors"
    assert "retired_v0.safetensors (not offered by any enabled backend)" in html
    assert "gone.safetensors (not offered by any enabled backend)" in select(html, "lora_name")


def test_without_known_nodes_the_controls_are_free_text(owner, project):
    style(project, checkpoint="anime_v1.safetensors")
    html = client_for(owner).get(reverse("generate"), {"project": project.pk}).text
    assert re.search(r'<input type="text" name="checkpoint" value="anime_v1.safetensors"', html)
    assert "data-free-text" in html and "no enabled backend has listed its checkpoints yet" in html


def test_only_the_fields_a_person_changed_are_recorded_as_overrides(owner, project, offered, enqueued):
    style(project, checkpoint="anime_v1.safetensors", loras=[{"name": "kai_v2.safetensors", "strength": 0.8}])
    template = shipped("weightless-image")
    client = client_for(owner)

    assert client.post(reverse("generate"), post_form(project, template)).status_code == 302
    untouched = Job.objects.get()
    assert untouched.overrides == {}

    changed = post_form(project, template, sampler="dpmpp_2m", steps=33, lora_strength=[0.8])
    assert client.post(reverse("generate"), changed).status_code == 302
    job = Job.objects.latest("pk")
    assert job.overrides == {"sampler": "dpmpp_2m", "steps": 33}
    assert job.params["sampler"] == "dpmpp_2m" and job.params["steps"] == 33

    loras = post_form(project, template, lora_name=["kai_v2.safetensors", "style/ink.safetensors"])
    loras["lora_strength"] = ["0.5", "1"]
    client.post(reverse("generate"), loras)
    job = Job.objects.latest("pk")
    assert set(job.overrides) == {"loras"}
    assert [(item["name"], item["strength"]) for item in job.overrides["loras"]] == [
        ("kai_v2.safetensors", 0.5),
        ("style/ink.safetensors", 1.0),
    ]


def test_switching_the_mode_moves_untouched_defaults_and_keeps_changed_ones(owner, project, offered):
    style(project, draft_steps=12, production_steps=30, draft_cfg=6.0, production_cfg=8.0)
    query = {
        "project": project.pk,
        "mode": "production",
        "changed": "mode",
        "steps": "12",
        "shown_steps": "12",  # as the draft preset showed it: untouched
        "cfg": "9.5",
        "shown_cfg": "6.0",  # a person typed 9.5
    }
    html = client_for(owner).get(reverse("generate"), query, HTTP_HX_REQUEST="true").text
    controls = html[html.index('id="generate-controls" hx-swap-oob="true"') :]
    assert re.search(r'name="steps" value="30"', controls) and 'name="shown_steps" value="30"' in controls
    assert re.search(r'name="cfg" value="9.5"', controls) and 'name="shown_cfg" value="8.0"' in controls
    assert 'name="prompt"' not in html  # nothing typed is replaced
    # The preview shows what the job would get: the production steps and the typed CFG.
    preview = html[html.index('id="generate-preview"') :]
    assert '<dt>steps</dt><dd class="mono">30</dd>' in preview and '<dd class="mono">9.5</dd>' in preview


def test_a_new_project_brings_its_own_style_defaults(owner, project, offered):
    from tests.factories import make_project

    other = make_project(owner, name="Harbour Lights")
    style(other, sampler="dpmpp_2m", draft_steps=9)
    style(project, sampler="euler", draft_steps=20)
    query = {"project": other.pk, "changed": "project", "sampler": "euler", "shown_sampler": "euler", "steps": "20"}
    query["shown_steps"] = "20"
    html = client_for(owner).get(reverse("generate"), query, HTTP_HX_REQUEST="true").text
    assert selected(html, "sampler") == "dpmpp_2m" and re.search(r'name="steps" value="9"', html)


def test_an_invalid_control_is_shown_and_nothing_is_queued(owner, project, offered, enqueued):
    template = shipped("weightless-image")
    response = client_for(owner).post(reverse("generate"), post_form(project, template, steps=0, width=100))
    assert response.status_code == 400 and not Job.objects.exists()
    assert "errorlist" in response.text
