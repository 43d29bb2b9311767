"""Importing and listing workflow templates through the API."""

from __future__ import annotations

import pytest

from generation.models import WorkflowTemplate
from tests.factories import make_project
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db

GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mine"}},
}


def test_import_an_api_export_and_see_it_listed_beside_the_shipped_ones(api_member, api_outsider, project):
    shipped("weightless-image")
    response = api_member.post(
        "/api/v1/templates", {"project": project.pk, "name": "My grey", "kind": "image", "graph": GRAPH}, format="json"
    )
    assert response.status_code == 201, response.json()
    created = response.json()
    assert created["source"] == "imported" and created["project"] == project.pk
    assert created["bindings"]["width"]  # inferred from EmptyImage
    slugs = {t["slug"] for t in api_member.get("/api/v1/templates?page_size=100").json()["results"]}
    assert {"my-grey", "weightless-image"} <= slugs
    outsider_slugs = {t["slug"] for t in api_outsider.get("/api/v1/templates?page_size=100").json()["results"]}
    assert "my-grey" not in outsider_slugs and "weightless-image" in outsider_slugs


def test_a_ui_format_export_is_refused_with_how_to_export_the_api_format(api_owner, project):
    ui = {"nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}
    response = api_owner.post(
        "/api/v1/templates", {"project": project.pk, "name": "UI", "kind": "image", "graph": ui}, format="json"
    )
    assert response.status_code == 400
    assert "Export (API)" in str(response.json())
    assert not WorkflowTemplate.objects.filter(project=project).exists()


def test_viewers_outsiders_and_shipped_templates_are_protected(api_owner, api_viewer, api_outsider, project, outsider):
    payload = {"project": project.pk, "name": "X", "kind": "image", "graph": GRAPH}
    assert api_viewer.post("/api/v1/templates", payload, format="json").status_code == 403
    assert api_outsider.post("/api/v1/templates", payload, format="json").status_code == 404
    mine = api_owner.post("/api/v1/templates", payload, format="json").json()
    assert api_viewer.delete(f"/api/v1/templates/{mine['id']}").status_code == 403
    assert api_outsider.delete(f"/api/v1/templates/{mine['id']}").status_code == 404
    assert api_owner.delete(f"/api/v1/templates/{shipped('weightless-image').pk}").status_code == 403
    assert api_owner.delete(f"/api/v1/templates/{mine['id']}").status_code == 204
    theirs = make_project(outsider, "Theirs")
    assert api_owner.post("/api/v1/templates", {**payload, "project": theirs.pk}, format="json").status_code == 404


def test_templates_say_which_inputs_follow_the_project_style(api_member, project):
    sd15 = api_member.get(f"/api/v1/templates/{shipped('txt2img-sd15').pk}").json()
    assert {"width", "height", "checkpoint", "sampler", "steps", "prompt"} <= set(sd15["follows_style"])
    assert "seed" not in sd15["follows_style"]
    response = api_member.post(
        "/api/v1/templates", {"project": project.pk, "name": "Mine", "kind": "image", "graph": GRAPH}, format="json"
    )
    assert response.json()["follows_style"] == []  # an import runs as written
    marked = {"width": {"node": "1", "input": "width", "style": True}}
    response = api_member.post(
        "/api/v1/templates",
        {"project": project.pk, "name": "Marked", "kind": "image", "graph": GRAPH, "bindings": marked},
        format="json",
    )
    assert response.json()["follows_style"] == ["width"]


def test_import_warns_about_node_classes_no_enabled_backend_has(fake, api_owner, project):
    from tests.generation.engine_helpers import backend_for

    backend_for(fake, name="gpu-1")
    graph = {
        **GRAPH,
        "3": {"class_type": "ADE_AnimateDiffLoaderGen1", "inputs": {"model_name": "mm.ckpt"}},
    }
    response = api_owner.post(
        "/api/v1/templates", {"project": project.pk, "name": "Anim", "kind": "loop", "graph": graph}, format="json"
    )
    assert response.status_code == 201, response.json()  # a warning, not a refusal
    [warning] = response.json()["warnings"]
    assert "'ADE_AnimateDiffLoaderGen1'" in warning and "gpu-1" in warning and "AnimateDiff-Evolved" in warning
    plain = api_owner.post(
        "/api/v1/templates", {"project": project.pk, "name": "Plain", "kind": "image", "graph": GRAPH}, format="json"
    )
    assert plain.json()["warnings"] == []


def test_an_import_can_ask_for_inputs_to_follow_the_style(api_owner, project):
    payload = {"project": project.pk, "name": "Styled", "kind": "image", "graph": GRAPH}
    response = api_owner.post("/api/v1/templates", {**payload, "follows_style": ["width", "height"]}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["follows_style"] == ["height", "width"]
    assert response.json()["bindings"]["width"][0]["style"] is True
    refused = api_owner.post("/api/v1/templates", {**payload, "follows_style": ["steps"]}, format="json")
    assert refused.status_code == 400 and "no binding for it" in str(refused.json())
    refused = api_owner.post("/api/v1/templates", {**payload, "follows_style": ["seed"]}, format="json")
    assert refused.status_code == 400 and "no value for seed" in str(refused.json())
