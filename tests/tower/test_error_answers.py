"""API addresses answer errors as JSON with a message; page addresses answer 404, never 500."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver

pytestmark = pytest.mark.django_db

HUGE = "99999999999999999999"


@pytest.fixture
def api_client(owner, token_for) -> Client:
    # Not the test client's default: errors become answers, as they do in the server.
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token_for(owner)}")


@pytest.mark.parametrize(
    "path", ["/api/v1/projects/1.5/", "/api/v1/nothing-here/", "/api/v1/jobs/abc/", f"/api/v1/jobs/{HUGE}/"]
)
def test_api_not_found_is_json(api_client, project, path):
    response = api_client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]


def test_an_api_body_over_the_limit_is_a_json_413_with_a_message(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    body = '{"name": "' + "x" * (2 * 1024 * 1024) + '"}'
    response = api_client.post("/api/v1/projects/", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than the limit of 1 MiB" in response.json()["detail"]


def _routes(resolver: URLResolver, prefix: str = ""):
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def test_page_urls_with_huge_ids_never_answer_500(owner, project):
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    routes = [r for r in _routes(get_resolver()) if "<int:" in r and not r.startswith("admin")]
    assert len(routes) > 10
    for route in routes:
        url = "/" + re.sub(r"<(str|slug|path):\w+>", "x", re.sub(r"<int:\w+>", HUGE, route))
        assert client.get(url).status_code in (403, 404, 405), url
        assert client.post(url).status_code < 500, url


def test_a_viewer_posting_the_generate_form_is_told_read_only_access(viewer, project):
    from tests.generation.engine_helpers import shipped

    template = shipped("weightless-image")
    client = Client(raise_request_exception=False)
    client.force_login(viewer)
    data = {"project": project.pk, "template": template.pk, "mode": "draft", "count": 1, "prompt": "x"}
    response = client.post("/generate/", data)
    assert response.status_code == 403
    assert "read-only access" in response.content.decode()


def test_the_generate_form_with_a_huge_project_id_is_not_a_500(owner, project):
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    response = client.post("/generate/", {"project": HUGE, "mode": "draft", "count": 1})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
