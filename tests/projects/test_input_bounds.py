"""Model names are names, free text is bounded, regenerations are bounded (issue 17, item 12)."""

from __future__ import annotations

import pytest

from projects.models import GenerationStyle, Project

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name",
    [
        "../../../../etc/passwd",
        "/etc/passwd",
        "C:\\Windows\\win.ini",
        "models\\..\\..\\secret",
        "SD1.5//x.safetensors",
        "a\x00b.safetensors",
        "line\nbreak.safetensors",
    ],
)
@pytest.mark.parametrize("field", ["checkpoint", "vae"])
def test_a_style_refuses_a_model_name_that_is_a_path(api_owner, project, field, name):
    response = api_owner.patch(f"/api/v1/projects/{project.pk}/style/", {field: name}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert getattr(GenerationStyle.objects.get(project=project), field) != name


@pytest.mark.parametrize("name", ["../loras/evil.safetensors", "/abs/evil.safetensors"])
def test_a_style_refuses_a_lora_name_that_is_a_path(api_owner, project, name):
    loras = [{"name": name, "strength": 0.5}]
    response = api_owner.patch(f"/api/v1/projects/{project.pk}/style/", {"loras": loras}, format="json")
    assert response.status_code == 400
    assert "loras" in response.json()
    assert GenerationStyle.objects.get(project=project).loras == []


@pytest.mark.parametrize("name", ["SD1.5/counterfeit_v3.safetensors", "SD1.5\\model.safetensors", "plain.ckpt"])
def test_a_style_accepts_a_model_in_a_subfolder_as_comfyui_lists_it(api_owner, project, name):
    response = api_owner.patch(
        f"/api/v1/projects/{project.pk}/style/",
        {"checkpoint": name, "loras": [{"name": name, "strength": 1}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert GenerationStyle.objects.get(project=project).checkpoint == name


@pytest.mark.parametrize("value", [11, 10**6, -1])
def test_max_regenerations_is_bounded(api_owner, project, value):
    response = api_owner.patch(f"/api/v1/projects/{project.pk}/", {"max_regenerations": value}, format="json")
    assert response.status_code == 400
    assert "max_regenerations" in response.json()
    assert Project.objects.get(pk=project.pk).max_regenerations == 3


def test_max_regenerations_is_bounded_in_the_service_too(owner):
    from django.core.exceptions import ValidationError

    from projects.services import project_create

    with pytest.raises(ValidationError, match="0 to 10"):
        project_create(owner=owner, name="Greedy", max_regenerations=1000)
    assert not Project.objects.filter(name="Greedy").exists()


@pytest.mark.parametrize(
    ("path", "field"),
    [("projects/{project}/", "description"), ("projects/{project}/style/", "style_prompt")],
)
def test_free_text_is_bounded(api_owner, project, path, field):
    response = api_owner.patch("/api/v1/" + path.format(project=project.pk), {field: "x" * 20_001}, format="json")
    assert response.status_code == 400
    assert "20000" in str(response.json()[field])


def test_a_character_design_prompt_is_bounded(api_owner, project):
    response = api_owner.post(
        "/api/v1/characters/", {"project": project.pk, "name": "Long", "design_prompt": "x" * 20_001}, format="json"
    )
    assert response.status_code == 400
    assert "design_prompt" in response.json()


# Page forms share the API's bound (tower.core.limits.TEXT_MAX_LENGTH): 100,000 characters is a form
# error, not a saved row.
LONG = "x" * 100_000
TOO_LONG = "at most 20000 characters"


def _client(user):
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_a_project_description_too_long_is_a_form_error_on_the_page(owner):
    from django.urls import reverse

    response = _client(owner).post(
        reverse("project-create"), {"name": "Endless", "description": LONG, "art_kind": "anime"}
    )
    assert response.status_code == 400
    assert TOO_LONG in response.content.decode()
    assert not Project.objects.filter(name="Endless").exists()


@pytest.mark.parametrize("field", ["premise", "world", "themes", "episode_outline", "notes"])
def test_a_story_bible_field_too_long_is_a_form_error_on_the_page(owner, project, field):
    from django.urls import reverse

    Project.objects.filter(pk=project.pk).update(story_bible={"premise": "old"})
    form = {"premise": "new", "tone": "", "world": "", "themes": "", "episode_outline": "", "notes": "", field: LONG}
    response = _client(owner).post(reverse("project-bible", args=[project.pk]), form)
    assert response.status_code == 400
    assert TOO_LONG in response.content.decode()
    assert Project.objects.get(pk=project.pk).story_bible == {"premise": "old"}


def test_a_style_prompt_too_long_is_a_form_error_on_the_page(owner, project):
    from django.urls import reverse

    from tests.projects.test_pages import style_data

    response = _client(owner).post(reverse("project-style", args=[project.pk]), style_data(style_prompt=LONG))
    assert response.status_code == 400
    assert TOO_LONG in response.content.decode()
    assert GenerationStyle.objects.get(project=project).style_prompt != LONG


@pytest.mark.parametrize("field", ["prompt", "negative"])
def test_a_generate_prompt_too_long_is_a_form_error_and_queues_nothing(owner, project, monkeypatch, field):
    from django.urls import reverse

    from generation import tasks
    from generation.models import Job
    from tests.generation.engine_helpers import shipped

    monkeypatch.setattr(tasks, "enqueue_run", lambda job_id: None)
    template = shipped("weightless-image")
    form = {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "seed": "", field: LONG}
    response = _client(owner).post(reverse("generate"), form)
    assert response.status_code == 400
    assert TOO_LONG in response.content.decode()
    assert not Job.objects.exists()
