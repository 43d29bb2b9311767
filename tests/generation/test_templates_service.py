"""Importing a user's exported ComfyUI graph as a project template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from generation.models import WorkflowTemplate
from generation.services.templates import TemplateError, template_import
from tests.factories import make_project

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture
def owner(db):
    # Plain rows: the shared personas hash real passwords, which costs seconds per test.
    return get_user_model().objects.create(username="producer")


@pytest.fixture
def member(db):
    return get_user_model().objects.create(username="assistant")


@pytest.fixture
def project(owner):
    return make_project(owner, name="Skyline Academy")


def _graph(slug: str = "txt2img-sd15") -> dict:
    return json.loads((WORKFLOWS / f"{slug}.json").read_text())["graph"]


@pytest.mark.django_db
def test_import_stores_the_graph_with_inferred_bindings(project, member):
    template = template_import(
        project=project, name="My SD graph", graph_json=json.dumps(_graph()), kind="image", user=member
    )
    template.refresh_from_db()
    assert template.project == project
    assert template.source == WorkflowTemplate.Source.IMPORTED
    assert template.slug == "my-sd-graph"
    assert template.created_by == member
    assert template.graph == _graph()
    assert template.required_nodes == [
        "CLIPSetLastLayer",
        "CLIPTextEncode",
        "CheckpointLoaderSimple",
        "EmptyLatentImage",
        "KSampler",
        "SaveImage",
        "VAEDecode",
    ]
    assert template.weightless is False
    assert template.bindings["seed"] == [{"node": "3", "class": "KSampler", "input": "seed"}]
    assert template.bindings["prompt"] == [{"node": "6", "class": "CLIPTextEncode", "input": "text"}]
    assert template.bindings["loras"] == [{"node": "4", "class": "CheckpointLoaderSimple"}]


@pytest.mark.django_db
def test_import_keeps_given_bindings_in_normal_form(project, owner):
    bindings = {
        "seed": {"title": "Grain", "input": "seed"},
        "prompt": {"node": 1, "input": "color", "transform": "color_from_text"},
    }
    template = template_import(
        project=project,
        name="Pattern",
        graph_json=_graph("weightless-image"),
        bindings=bindings,
        kind="image",
        user=owner,
    )
    assert template.bindings == {
        "seed": [{"title": "Grain", "input": "seed"}],
        "prompt": [{"node": "1", "input": "color", "transform": "color_from_text"}],
    }
    assert template.weightless is True


@pytest.mark.django_db
def test_the_same_name_twice_gets_a_new_slug(project, owner):
    first = template_import(project=project, name="Graph", graph_json=_graph(), kind="image", user=owner)
    second = template_import(project=project, name="Graph", graph_json=_graph(), kind="image", user=owner)
    assert (first.slug, second.slug) == ("graph", "graph-2")


UI_EXPORT = {"last_node_id": 2, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": [], "version": 0.4}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"graph_json": json.dumps(UI_EXPORT)}, "Export (API)"),
        ({"graph_json": "{oops"}, "not valid JSON"),
        ({"graph_json": {"1": {"inputs": {}}}}, "node 1: has no class_type"),
        (
            {"bindings": {"seed": {"class": "KSamplerAdvanced", "input": "noise_seed"}}},
            "the bindings do not fit this workflow: binding 'seed': no node matches class KSamplerAdvanced",
        ),
        ({"bindings": {"speed": {"node": "3", "input": "seed"}}}, "unknown parameter 'speed'"),
        ({"kind": "gif"}, "kind must be one of"),
        ({"name": "  "}, "a template needs a name"),
        ({"name": "x" * 201}, "name:"),
    ],
)
def test_bad_input_is_refused_and_leaves_no_row(project, owner, kwargs, fragment):
    arguments = {"project": project, "name": "Graph", "graph_json": _graph(), "kind": "image", "user": owner}
    arguments.update(kwargs)
    with pytest.raises(TemplateError) as exc:
        template_import(**arguments)
    assert fragment in str(exc.value)
    assert not WorkflowTemplate.objects.exists()
