"""The project's production settings (phase thresholds, sheet poses, phase templates): API, page, admin."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from generation.models import JobKind
from projects.models import DEFAULT_PHASE_TEMPLATES, DEFAULT_SHEET_POSES, Project
from tests.factories import TemplateFactory, make_project

pytestmark = pytest.mark.django_db

FIELDS = ["threshold_palette", "threshold_face_quality", "threshold_overall", "sheet_poses", "phase_templates"]


def stored(project: Project) -> dict:
    fresh = Project.objects.get(pk=project.pk)
    return {name: getattr(fresh, name) for name in FIELDS}


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_api_sets_and_reads_back_the_production_settings(api_owner, project):
    url = f"/api/v1/projects/{project.pk}/"
    assert api_owner.get(url).json()["sheet_poses"] == DEFAULT_SHEET_POSES
    assert api_owner.get(url).json()["phase_templates"] == DEFAULT_PHASE_TEMPLATES

    response = api_owner.patch(
        url,
        {
            "threshold_palette": 12.5,
            "threshold_face_quality": 0.9,
            "threshold_overall": 0.75,
            "sheet_poses": ["  front view ", "back view"],
            "phase_templates": {"sheet": " weightless-sheet ", "loop": "weightless-loop", "video": "weightless-video"},
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    expected = {
        "threshold_palette": 12.5,
        "threshold_face_quality": 0.9,
        "threshold_overall": 0.75,
        "sheet_poses": ["front view", "back view"],  # trimmed
        "phase_templates": {"sheet": "weightless-sheet", "loop": "weightless-loop", "video": "weightless-video"},
    }
    assert {name: response.json()[name] for name in FIELDS} == expected
    assert {name: api_owner.get(url).json()[name] for name in FIELDS} == expected
    assert stored(project) == expected


def test_a_project_is_created_with_its_production_settings(api_owner):
    response = api_owner.post(
        "/api/v1/projects/",
        {"name": "Sheets", "sheet_poses": ["front view"], "phase_templates": {"loop": "weightless-loop"}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    project = Project.objects.get(pk=response.json()["id"])
    assert project.sheet_poses == ["front view"]
    assert project.phase_templates == {"loop": "weightless-loop"}  # the other phases follow the defaults


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"threshold_palette": 120}, "threshold_palette", "less than or equal to 100"),
        ({"threshold_face_quality": -0.1}, "threshold_face_quality", "greater than or equal to 0"),
        ({"threshold_overall": 1.5}, "threshold_overall", "less than or equal to 1"),
        ({"sheet_poses": []}, "sheet_poses", "at least 1"),
        ({"sheet_poses": [f"pose {n}" for n in range(17)]}, "sheet_poses", "no more than 16"),
        ({"sheet_poses": ["front view", "   "]}, "sheet_poses", "pose 2 is empty"),
        ({"sheet_poses": ["front view", "x" * 201]}, "sheet_poses", "pose 2 is longer than 200 characters"),
        ({"sheet_poses": "front view"}, "sheet_poses", "list"),
        ({"phase_templates": {"sheet": "character-sheet", "intro": "x"}}, "phase_templates", "unknown key(s) 'intro'"),
        ({"phase_templates": {"loop": "not a slug!"}}, "phase_templates", "loop must be a workflow template's slug"),
        ({"phase_templates": {"video": 3}}, "phase_templates", "video must be a workflow template's slug"),
        ({"phase_templates": ["character-sheet"]}, "phase_templates", "must be an object"),
    ],
)
def test_bad_production_settings_are_refused_by_name_and_nothing_changes(api_owner, project, change, field, message):
    before = stored(project)

    response = api_owner.patch(f"/api/v1/projects/{project.pk}/", change, format="json")

    assert response.status_code == 400
    assert message in " ".join(map(str, response.json()[field])), response.json()
    assert stored(project) == before


def test_the_service_refuses_what_the_api_field_bounds_would_catch_first(project):
    from django.core.exceptions import ValidationError

    from projects.services import project_update

    before = stored(project)
    for change, message in [
        ({"threshold_palette": 101}, "mean ΔE (Lab) from 0 to 100"),
        ({"threshold_overall": True}, "a number from 0 to 1"),
        ({"sheet_poses": [f"p{n}" for n in range(17)]}, "from 1 to 16 poses"),
        ({"phase_templates": {"sheet": "x" * 81}}, "sheet must be a workflow template's slug"),
    ]:
        with pytest.raises(ValidationError) as caught:
            project_update(project=Project.objects.get(pk=project.pk), **change)
        assert message in str(caught.value.message_dict)
    assert stored(project) == before


def test_an_outsider_gets_404_and_a_viewer_403_and_nothing_changes(project, outsider, viewer):
    from rest_framework.test import APIClient

    before = stored(project)
    for user, status in [(outsider, 404), (viewer, 403)]:
        client = APIClient()
        client.force_authenticate(user=user)
        response = client.patch(
            f"/api/v1/projects/{project.pk}/", {"sheet_poses": ["stolen"], "threshold_overall": 0.1}, format="json"
        )
        assert response.status_code == status
        page = page_client(user).post(f"/projects/{project.pk}/", {**page_data(project), "sheet_poses_text": "x"})
        assert page.status_code == status
    assert client.get(f"/api/v1/projects/{project.pk}/").json()["sheet_poses"] == DEFAULT_SHEET_POSES  # viewer reads
    assert stored(project) == before


def page_data(project: Project, **changes) -> dict:
    data = {
        "name": project.name,
        "description": "",
        "art_kind": project.art_kind,
        "threshold_palette": "20",
        "threshold_face_quality": "0.85",
        "threshold_overall": "0.7",
        "sheet_poses_text": "front view\n\n  back view  \nclose-up of the face",
        "phase_template_sheet": "weightless-sheet",
        "phase_template_loop": "weightless-loop",
        "phase_template_video": "weightless-video",
    }
    return {**data, **changes}


def test_the_project_page_shows_and_saves_the_production_settings(project, owner, outsider):
    for slug, kind in [
        ("weightless-sheet", JobKind.CHARACTER_SHEET),
        ("weightless-loop", JobKind.LOOP),
        ("weightless-video", JobKind.VIDEO),
        ("plain-image", JobKind.IMAGE),
    ]:
        TemplateFactory(slug=slug, kind=kind)
    TemplateFactory(slug="elsewhere-sheet", kind=JobKind.CHARACTER_SHEET, project=make_project(outsider))
    client = page_client(owner)
    html = client.get(f"/projects/{project.pk}/").content.decode()
    assert 'type="number" name="threshold_palette"' in html
    assert "three-quarter view from the left" in html  # the poses, one a line
    # The phase templates are selects of the templates of each phase's kind this project can use;
    # the stored default stays selectable, marked, though no template of that slug exists here.
    sheet_select = html.split('name="phase_template_sheet"')[1].split("</select>")[0]
    assert '<option value="weightless-sheet">' in sheet_select
    assert "character-sheet (no character_sheet template of this slug)" in sheet_select
    assert "plain-image" not in sheet_select and "weightless-loop" not in sheet_select
    assert "elsewhere-sheet" not in sheet_select  # another project's template

    response = client.post(f"/projects/{project.pk}/", page_data(project))

    assert response.status_code == 302
    assert stored(project) == {
        "threshold_palette": 20.0,
        "threshold_face_quality": 0.85,
        "threshold_overall": 0.7,
        "sheet_poses": ["front view", "back view", "close-up of the face"],
        "phase_templates": {"sheet": "weightless-sheet", "loop": "weightless-loop", "video": "weightless-video"},
    }
    html = client.get(f"/projects/{project.pk}/").content.decode()
    loop_select = html.split('name="phase_template_loop"')[1].split("</select>")[0]
    assert '<option value="weightless-loop" selected>' in loop_select


def test_the_project_page_shows_errors_inline_and_saves_nothing(project, owner):
    client = page_client(owner)
    before = stored(project)

    response = client.post(
        f"/projects/{project.pk}/",
        page_data(project, threshold_overall="1.5", sheet_poses_text="front view\n" + "x" * 201),
    )

    assert response.status_code == 400
    html = response.content.decode()
    assert "errorlist" in html
    assert "pose 2 is longer than 200 characters" in html
    assert "less than or equal to 1" in html
    assert 'value="1.5"' in html  # what was typed stays on the form
    assert stored(project) == before

    response = client.post(f"/projects/{project.pk}/", page_data(project, sheet_poses_text="  \n "))
    assert response.status_code == 400 and "give from 1 to 16 poses" in response.content.decode()
    response = client.post(f"/projects/{project.pk}/", page_data(project, phase_template_loop="no slug!"))
    assert response.status_code == 400 and "loop must be a workflow template&#x27;s slug" in response.content.decode()
    assert stored(project) == before


def test_the_admin_shows_and_checks_the_production_settings(admin_client, project):
    url = reverse("admin:projects_project_change", args=[project.pk])
    form = admin_client.get(url).context["adminform"].form
    for name in [*FIELDS, "advance_unevaluated"]:
        assert name in form.fields

    html = admin_client.get(url).content.decode()
    assert "Production" in html and 'name="sheet_poses"' in html


def test_the_admin_refuses_bad_poses_and_saves_good_ones_trimmed(admin_client, project):
    from tests.projects.test_admin import management, project_form, style_form

    url = reverse("admin:projects_project_change", args=[project.pk])
    base = project_form(name=project.name, slug=project.slug, owner=project.owner_id)
    memberships = list(project.memberships.order_by("pk"))
    base.update(management("memberships", total=len(memberships), initial=len(memberships)))
    for i, m in enumerate(memberships):
        base.update({f"memberships-{i}-id": m.pk, f"memberships-{i}-project": project.pk})
        base.update({f"memberships-{i}-user": m.user_id, f"memberships-{i}-role": m.role})
    base.update(style_form(project.style))
    before = stored(project)

    bad = admin_client.post(url, {**base, "sheet_poses": '["front", ""]', "phase_templates": '{"intro": "x"}'})
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "pose 2 is empty" in errors["sheet_poses"][0]
    assert "unknown key(s) 'intro'" in errors["phase_templates"][0]
    assert stored(project) == before

    good = admin_client.post(url, {**base, "sheet_poses": '[" front ", "back"]', "threshold_palette": "30"})
    assert good.status_code == 302
    assert stored(project)["sheet_poses"] == ["front", "back"]
    assert stored(project)["threshold_palette"] == 30.0
