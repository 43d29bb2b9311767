"""One look: the error pages, the admin and the API docs wear the studio's dark theme, and API
addresses keep answering errors as JSON."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from generation.models import JobStatus
from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

THEME = '<link rel="stylesheet" href="/static/css/tower.css">'


def client_for(user) -> Client:
    # Errors become answers, as they do in the server.
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


@pytest.mark.parametrize("signed_in", [True, False])
def test_404_page_is_themed_and_names_the_address(owner, signed_in):
    client = client_for(owner) if signed_in else Client()
    response = client.get("/no-such-page/here/")
    html = response.content.decode()
    assert response.status_code == 404 and THEME in html
    assert "Nothing here" in html and "<code>/no-such-page/here/</code>" in html


def test_404_of_a_missing_row_is_themed_and_the_api_stays_json(owner, project):
    client = client_for(owner)
    page = client.get(reverse("job-detail", args=[987654]))
    assert page.status_code == 404 and THEME in page.content.decode()
    api = client.get("/api/v1/jobs/987654/")
    assert api.status_code == 404 and api["Content-Type"] == "application/json"


def test_403_page_is_themed_and_says_why(viewer, project):
    job = JobFactory(project=project, status=JobStatus.FAILED)
    response = client_for(viewer).post(reverse("job-action", args=[job.pk, "retry"]))
    html = response.content.decode()
    assert response.status_code == 403 and THEME in html
    assert "You have read-only access to this project" in html


def test_500_page_is_themed_and_the_api_stays_json(owner, project, monkeypatch):
    def crash(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("quality.views.gallery_assets", crash)
    response = client_for(owner).get(reverse("gallery"))
    html = response.content.decode()
    assert response.status_code == 500 and THEME in html and "Something went wrong" in html
    assert "boom" not in html


def test_admin_pages_load_the_dark_stylesheet_after_the_admins_own(owner):
    login = Client().get(reverse("admin:login")).content.decode()
    assert "/static/css/admin.css" in login
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    client = Client()
    client.force_login(admin)
    changelist = client.get(reverse("admin:generation_job_changelist")).content.decode()
    assert changelist.index("/static/admin/css/changelists.css") < changelist.index("/static/css/admin.css")
    assert "admin/js/theme.js" not in changelist  # no light/dark toggle: always the studio's look
    assert f'href="{reverse("dashboard")}">Studio</a>' in changelist


def test_api_docs_are_themed_with_a_way_back_to_the_studio(owner):
    html = client_for(owner).get(reverse("api-docs")).content.decode()
    assert "/static/css/api-docs.css" in html and 'id="swagger-ui"' in html
    assert f'href="{reverse("dashboard")}">Back to the studio</a>' in html


def test_a_form_without_its_csrf_token_gets_the_themed_403(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("generate"), {"prompt": "x"})
    html = response.content.decode()
    assert response.status_code == 403 and THEME in html and "reload the page" in html
