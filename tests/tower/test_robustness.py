"""Bad input gets a clear 4xx with a message, never a 500 (issue 17, item 12)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"


def test_media_path_with_nul_is_404(client, owner):
    client.force_login(owner)
    assert client.get("/media/assets/1/%00.png").status_code == 404


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("jobs", "project"),
        ("jobs", "character"),
        ("assets", "project"),
        ("assets", "job"),
        ("characters", "project"),
        ("episodes", "project"),
        ("scenes", "project"),
        ("scenes", "episode"),
        ("versions", "character"),
        ("variations", "character"),
        ("templates", "project"),
    ],
)
def test_huge_numeric_filters_answer_400_naming_the_parameter(api_owner, project, path, param):
    response = api_owner.get(f"/api/v1/{path}/?{param}={HUGE}")
    assert response.status_code == 400, response.content
    assert "less than or equal to" in response.json()[param][0]


def test_deep_json_answers_400(api_owner, project):
    body = "[" * 1000 + "]" * 1000
    response = api_owner.post("/api/v1/projects/", data=body, content_type="application/json")
    assert response.status_code == 400
    assert "deep" in response.json()["detail"]


def test_gallery_ignores_a_huge_project_filter_with_a_message(client, owner, project):
    client.force_login(owner)
    response = client.get(f"/gallery/?project={HUGE}&character={HUGE}")
    assert response.status_code == 200
    assert b"Select a valid choice" in response.content


@pytest.mark.parametrize("body", ["1e400", "NaN", "-Infinity"])
def test_non_finite_numbers_in_a_body_answer_400(api_owner, body):
    response = api_owner.post(
        "/api/v1/projects/", data=f'{{"name": "x", "x": {body}}}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_deep_json_answers_400_on_a_nested_field_too(api_owner, project):
    # 100 levels parse in Python, but the bound is lower: nothing deep reaches a service.
    bible = '{"premise": ' + "[" * 100 + "]" * 100 + "}"
    response = api_owner.patch(
        f"/api/v1/projects/{project.pk}/", data=f'{{"story_bible": {bible}}}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "levels deep" in response.json()["detail"]


@pytest.mark.parametrize("index", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_graph_string_with_a_non_finite_link_index_answers_400(api_owner, project, index):
    graph = (
        '{"1": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},'
        ' "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", ' + index + "]}}}"
    )
    response = api_owner.post(
        "/api/v1/templates", {"project": project.pk, "name": "Odd", "kind": "image", "graph": graph}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "not a link" in str(response.json())


def test_a_graph_string_nested_1000_deep_answers_400(api_owner, project):
    graph = "[" * 1000 + "]" * 1000
    response = api_owner.post(
        "/api/v1/templates", {"project": project.pk, "name": "Deep", "kind": "image", "graph": graph}, format="json"
    )
    assert response.status_code == 400, response.content
    assert "nested far too deeply" in str(response.json())


@pytest.mark.parametrize("path", ["/characters/", "/jobs/", "/ingest/", "/review/", "/generate/"])
def test_pages_with_a_huge_id_filter_are_not_a_500(client, owner, project, path):
    client.force_login(owner)
    for param in ("project", "character", "job"):
        assert client.get(f"{path}?{param}={HUGE}").status_code in (200, 404)
