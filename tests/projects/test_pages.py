"""Project pages: create, style and bible editing, inline errors, CSRF, outsiders."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from projects.models import Project

pytestmark = pytest.mark.django_db


def client_for(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def style_data(**changes) -> dict:
    data = {
        "checkpoint": "anime_v1.safetensors",
        "vae": "",
        "sampler": "euler",
        "scheduler": "karras",
        "width": 512,
        "height": 768,
        "clip_skip": 2,
        "fps": 12,
        "style_prompt": "cel shading",
        "negative_prompt": "lowres",
        "loras_text": "style_a.safetensors: 0.7\nline_art.safetensors",
        "draft_steps": 10,
        "draft_cfg": 6,
        "draft_denoise": 0.7,
        "production_steps": 30,
        "production_cfg": 7.5,
        "production_denoise": 1,
    }
    return {**data, **changes}


def test_create_a_project_and_land_on_its_page(owner):
    client = client_for(owner)
    response = client.post(reverse("project-create"), {"name": "Sky Pirates", "description": "", "art_kind": "anime"})
    project = Project.objects.get(name="Sky Pirates")
    assert response.status_code == 302 and response.url == reverse("project-detail", args=[project.pk])
    assert project.owner == owner and project.style.width == 768


def test_create_form_shows_errors_inline_and_keeps_what_was_typed(owner):
    response = client_for(owner).post(
        reverse("project-create"), {"name": "", "description": "kept text", "art_kind": "anime"}
    )
    assert response.status_code == 400
    assert b"errorlist" in response.content and b"kept text" in response.content
    assert not Project.objects.exists()


def test_style_with_draft_and_production_presets_is_saved(owner, project):
    response = client_for(owner).post(reverse("project-style", args=[project.pk]), style_data())
    assert response.status_code == 302
    style = Project.objects.get(pk=project.pk).style
    assert (style.draft_steps, style.production_steps, style.production_cfg) == (10, 30, 7.5)
    assert style.loras == [
        {"name": "style_a.safetensors", "strength": 0.7},
        {"name": "line_art.safetensors", "strength": 1.0},
    ]


def test_bad_style_is_refused_inline_and_nothing_changes(owner, project):
    response = client_for(owner).post(
        reverse("project-style", args=[project.pk]), style_data(width=500, loras_text="x.safetensors: strong")
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "not a number" in html
    assert 'value="500"' in html  # what was typed stays on the form
    assert Project.objects.get(pk=project.pk).style.width == 768

    response = client_for(owner).post(reverse("project-style", args=[project.pk]), style_data(width=500))
    assert response.status_code == 400 and "multiples of 8" in response.content.decode()
    assert Project.objects.get(pk=project.pk).style.width == 768


def test_story_bible_editor_keeps_keys_it_does_not_edit(owner, project):
    Project.objects.filter(pk=project.pk).update(story_bible={"premise": "old", "characters_arc": {"kai": "grows"}})
    response = client_for(owner).post(
        reverse("project-bible", args=[project.pk]),
        {
            "premise": "Kai flies",
            "tone": "warm",
            "world": "",
            "themes": "flight, friendship",
            "episode_outline": "Ep 1\n\nEp 2",
            "notes": "",
        },
    )
    assert response.status_code == 302
    bible = Project.objects.get(pk=project.pk).story_bible
    assert bible["premise"] == "Kai flies" and bible["themes"] == ["flight", "friendship"]
    assert bible["episode_outline"] == ["Ep 1", "Ep 2"] and bible["characters_arc"] == {"kai": "grows"}


@pytest.mark.parametrize("name", ["project-detail", "project-style", "project-bible"])
def test_outsider_gets_404_for_every_project_url(outsider, project, name):
    client = client_for(outsider)
    url = reverse(name, args=[project.pk])
    assert client.get(url).status_code in (404, 405)
    assert client.post(url, style_data()).status_code == 404
    assert Project.objects.get(pk=project.pk).style.width == 768


def test_viewer_sees_but_cannot_change(viewer, project):
    client = client_for(viewer)
    page = client.get(reverse("project-detail", args=[project.pk]))
    assert page.status_code == 200 and b"Save style" not in page.content
    assert client.post(reverse("project-style", args=[project.pk]), style_data()).status_code == 403
    assert Project.objects.get(pk=project.pk).style.width == 768


def test_a_form_without_its_csrf_token_changes_nothing(owner, project):
    client = client_for(owner, enforce_csrf_checks=True)
    response = client.post(reverse("project-style", args=[project.pk]), style_data())
    assert response.status_code == 403
    assert Project.objects.get(pk=project.pk).style.width == 768
    assert client.post(reverse("project-create"), {"name": "Forged", "art_kind": "anime"}).status_code == 403
    assert not Project.objects.filter(name="Forged").exists()
