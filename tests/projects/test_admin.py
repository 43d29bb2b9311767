from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from projects.models import GenerationStyle, Membership, Project
from projects.services import episode_create, scene_create
from tests.factories import CharacterFactory, make_project

pytestmark = pytest.mark.django_db

ADD_PROJECT = reverse("admin:projects_project_add")


def management(prefix: str, total: int = 0, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def project_form(**overrides) -> dict[str, str]:
    data = {
        "name": "Moonlit Harbour",
        "slug": "moonlit-harbour",
        "description": "",
        "art_kind": "anime",
        "story_bible": '{"premise": "a lighthouse keeper"}',
        "threshold_similarity": "0.7",
        "threshold_aesthetic": "5.5",
        "threshold_temporal": "0.85",
        "threshold_motion": "0.8",
        "phase_pass_ratio": "0.8",
        "phase_window": "10",
        "max_regenerations": "3",
        "threshold_palette": "25",
        "threshold_face_quality": "0.8",
        "threshold_overall": "0.8",
        "sheet_poses": '["front view", "back view"]',
        "phase_templates": '{"sheet": "character-sheet"}',
        **management("memberships"),
    }
    data.update(overrides)
    return data


def style_form(style: GenerationStyle, **overrides) -> dict[str, str]:
    fields = [
        "checkpoint", "vae", "sampler", "scheduler", "width", "height", "fps", "clip_skip", "style_prompt",
        "negative_prompt", "draft_steps", "draft_cfg", "draft_denoise", "production_steps", "production_cfg",
        "production_denoise",
    ]  # fmt: skip
    data = {f"style-0-{f}": str(getattr(style, f)) for f in fields}
    data.update({"style-0-loras": "[]", "style-0-id": str(style.pk), "style-0-project": str(style.project_id)})
    data.update({f"style-0-{k}": v for k, v in overrides.items()})
    return {**management("style", total=1, initial=1), **data}


def test_adding_a_project_creates_its_style_and_members(admin_client, owner, member):
    response = admin_client.post(
        ADD_PROJECT,
        project_form(
            owner=owner.pk,
            **management("memberships", total=1),
            **{"memberships-0-user": member.pk, "memberships-0-role": "viewer"},
        ),
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    project = Project.objects.get(slug="moonlit-harbour")
    assert project.owner == owner
    assert project.story_bible == {"premise": "a lighthouse keeper"}
    assert GenerationStyle.objects.filter(project=project).exists()
    assert list(Membership.objects.filter(project=project).values_list("user__username", "role")) == [
        ("member", "viewer")
    ]


def test_a_staff_user_adding_a_project_owns_it(outsider):
    outsider.is_staff = True
    outsider.save()
    outsider.user_permissions.add(*Permission.objects.filter(content_type__app_label="projects"))
    client = Client()
    client.force_login(outsider)

    assert "owner" not in client.get(ADD_PROJECT).context["adminform"].form.fields
    response = client.post(ADD_PROJECT, project_form())

    assert response.status_code == 302
    assert Project.objects.get(slug="moonlit-harbour").owner == outsider


def test_a_malformed_story_bible_is_a_form_error(admin_client, owner):
    response = admin_client.post(
        ADD_PROJECT, project_form(owner=owner.pk, story_bible='{"episode_outline": "not a list"}')
    )

    assert response.status_code == 200
    assert "episode_outline must be a list" in str(response.context["adminform"].form.errors)
    assert not Project.objects.filter(slug="moonlit-harbour").exists()


def test_project_phase_is_read_only(admin_client, project):
    url = reverse("admin:projects_project_change", args=[project.pk])

    form = admin_client.get(url).context["adminform"].form
    assert "phase" not in form.fields


def test_style_is_edited_inline_and_validated(admin_client, project):
    url = reverse("admin:projects_project_change", args=[project.pk])
    base = project_form(name=project.name, slug=project.slug, owner=project.owner_id)
    memberships = list(project.memberships.order_by("pk"))
    base.update(management("memberships", total=len(memberships), initial=len(memberships)))
    for i, m in enumerate(memberships):
        base.update(
            {f"memberships-{i}-id": m.pk, f"memberships-{i}-project": project.pk, f"memberships-{i}-user": m.user_id}
        )
        base[f"memberships-{i}-role"] = m.role

    bad = admin_client.post(url, {**base, **style_form(project.style, loras='[{"strength": 1}]', width="770")})
    assert bad.status_code == 200
    errors = str(bad.context["inline_admin_formsets"][0].formset.errors)
    assert "needs a non-empty" in errors
    assert "multiple of 8" in errors

    good = admin_client.post(
        url, {**base, **style_form(project.style, loras='[{"name": "ink.safetensors", "strength": 0.6}]', width="832")}
    )
    assert good.status_code == 302
    project.style.refresh_from_db()
    assert (project.style.width, project.style.loras) == (832, [{"name": "ink.safetensors", "strength": 0.6}])


def test_max_regenerations_above_ten_is_a_form_error_and_nothing_changes(admin_client, project):
    url = reverse("admin:projects_project_change", args=[project.pk])
    form = project_form(name="Renamed", slug=project.slug, owner=project.owner_id, max_regenerations="1000000")
    memberships = list(project.memberships.order_by("pk"))
    form.update(management("memberships", total=len(memberships), initial=len(memberships)))
    for i, m in enumerate(memberships):
        form.update(
            {
                f"memberships-{i}-id": m.pk,
                f"memberships-{i}-project": project.pk,
                f"memberships-{i}-user": m.user_id,
                f"memberships-{i}-role": m.role,
            }
        )

    response = admin_client.post(url, {**form, **style_form(project.style)})

    assert response.status_code == 200
    assert "less than or equal to 10" in str(response.context["adminform"].form.errors["max_regenerations"])
    project.refresh_from_db()
    assert (project.name, project.max_regenerations) == ("Skyline Academy", 3)


def test_episode_page_lists_its_scenes_inline(admin_client, project):
    episode = episode_create(project=project, title="Pilot")
    scene_create(episode=episode, title="Rooftop at dusk")

    html = admin_client.get(reverse("admin:projects_episode_change", args=[episode.pk])).content.decode()

    assert "Rooftop at dusk" in html


def test_scene_list_names_the_characters_in_it(admin_client, project):
    scene = scene_create(episode=episode_create(project=project, title="Pilot"), title="Rooftop")
    CharacterFactory(project=project, name="Kai").scenes.add(scene)
    CharacterFactory(project=project, name="Mei").scenes.add(scene)

    response = admin_client.get(reverse("admin:projects_scene_changelist"))

    assert "Kai, Mei" in response.content.decode()


def test_project_list_for_superuser_counts_members(admin_client, project, owner):
    make_project(owner, name="Solo")

    rows = {
        p.name: p.member_count
        for p in admin_client.get(reverse("admin:projects_project_changelist")).context["cl"].result_list
    }

    assert rows == {"Skyline Academy": 2, "Solo": 0}
