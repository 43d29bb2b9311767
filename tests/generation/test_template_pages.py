"""The workflow template pages: which inputs follow the project style, and node warnings."""

from __future__ import annotations

import pytest
from django.test import Client

from generation.services.templates import template_import
from tests.generation.engine_helpers import shipped

pytestmark = pytest.mark.django_db

GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ADE_AnimateDiffLoaderGen1", "inputs": {"model_name": "mm.ckpt"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "mine"}},
}


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _row(html: str, parameter: str) -> str:
    start = html.index(f'data-parameter="{parameter}"')
    return html[start : html.index("</tr>", start)]


def test_the_template_page_shows_which_inputs_follow_the_style(member, project):
    sd15 = shipped("txt2img-sd15")
    html = client_for(member).get(f"/templates/{sd15.pk}/").content.decode()
    assert 'data-follows-style="yes"' in _row(html, "width")
    assert 'data-follows-style="no"' in _row(html, "seed")
    mine = template_import(project=project, name="Mine", graph_json=GRAPH, kind="image", user=member)
    html = client_for(member).get(f"/templates/{mine.pk}/").content.decode()
    row = _row(html, "width")
    assert 'data-follows-style="no"' in row and ">512<" in row  # the graph's own value is what runs
    listing = client_for(member).get("/templates/").content.decode()
    assert "nothing: runs as written" in listing and "checkpoint, clip_skip" in listing


def test_the_template_page_warns_about_node_classes_no_backend_has(fake, member, project):
    from tests.generation.engine_helpers import backend_for

    backend_for(fake, name="gpu-1")
    mine = template_import(project=project, name="Mine", graph_json=GRAPH, kind="image", user=member)
    html = client_for(member).get(f"/templates/{mine.pk}/").content.decode()
    assert "data-node-warning" in html and "ADE_AnimateDiffLoaderGen1" in html and "gpu-1" in html


def test_outsiders_do_not_see_a_projects_templates(member, outsider, project):
    mine = template_import(project=project, name="Mine", graph_json=GRAPH, kind="image", user=member)
    assert client_for(outsider).get(f"/templates/{mine.pk}/").status_code == 404
    assert "Mine" not in client_for(outsider).get("/templates/").content.decode()
    assert Client().get("/templates/").status_code == 302
