"""Base pages: login/logout, the dashboard, access for anonymous users, constant queries."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from generation.models import JobStatus
from tests.factories import AssetFactory, BackendFactory, CharacterFactory, JobFactory, make_project

pytestmark = pytest.mark.django_db

PAGES = ["dashboard", "project-list", "project-create", "character-list", "generate", "job-list", "gallery"]


@pytest.fixture
def owner_client(client: Client, owner) -> Client:
    client.force_login(owner)
    return client


def test_login_and_logout_with_our_own_pages(client, owner):
    page = client.get(reverse("login"))
    assert page.status_code == 200
    assert b"csrfmiddlewaretoken" in page.content
    assert b"/admin/" not in page.content

    wrong = client.post(reverse("login"), {"username": "owner", "password": "nope"})
    assert wrong.status_code == 200
    assert b"errorlist" in wrong.content
    assert b'value="owner"' in wrong.content  # what was typed stays

    done = client.post(reverse("login"), {"username": "owner", "password": "pw-for-tests-123"})
    assert done.status_code == 302 and done.url == reverse("dashboard")

    assert client.get(reverse("logout")).status_code == 405  # logging out is a POST (CSRF-protected)
    out = client.post(reverse("logout"))
    assert out.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_users_are_sent_to_the_login_page(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


@pytest.mark.parametrize("name", PAGES)
def test_every_page_renders_with_navigation_and_vendored_htmx(owner_client, project, name):
    response = owner_client.get(reverse(name))
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/vendor/htmx-2.0.11/htmx.min.js" in html
    assert "/static/vendor/htmx-ext-ws-2.0.4/ws.min.js" in html
    assert 'ws-connect="/ws/pages/' in html  # the page kind (dashboard, jobs…) follows
    assert "//cdn" not in html and "unpkg" not in html
    for link in ("project-list", "character-list", "generate", "job-list", "gallery"):
        assert f'href="{reverse(link)}"' in html


def test_vendored_files_carry_their_licences():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "static" / "vendor"
    for folder in ("htmx-2.0.11", "htmx-ext-ws-2.0.4"):
        assert (
            "Permission" in (root / folder / "LICENSE").read_text() or "BSD" in (root / folder / "LICENSE").read_text()
        )


def test_dashboard_shows_active_jobs_outputs_backends_and_phases(owner_client, owner, outsider, project):
    BackendFactory(
        name="gpu-box",
        healthy=True,
        stats={"devices": [{"name": "RTX", "vram_total": 8 * 1024**3, "vram_free": 2 * 1024**3}]},
    )
    running = JobFactory(project=project, status=JobStatus.RUNNING, progress=0.4, current_node="Grain (#4)")
    done = JobFactory(project=project, status=JobStatus.SUCCEEDED, progress=1.0)
    asset = AssetFactory(project=project, job=done)
    hidden = JobFactory(project=make_project(outsider, name="Elsewhere"), status=JobStatus.RUNNING)

    html = owner_client.get(reverse("dashboard")).content.decode()

    assert f'id="job-row-{running.pk}"' in html and "Grain (#4)" in html and 'aria-valuenow="40"' in html
    assert f'id="job-row-{done.pk}"' not in html  # finished jobs leave the live table
    assert f'data-asset="{asset.pk}"' in html
    assert "gpu-box" in html and "VRAM 75%" in html
    assert "1 · Stills and character sheets" in html
    assert f"job-row-{hidden.pk}" not in html and "Elsewhere" not in html


def test_dashboard_htmx_request_gets_only_the_live_fragment(owner_client, project):
    response = owner_client.get(reverse("dashboard"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"<html" not in response.content and b"Running and queued" in response.content


def _rows(owner, n: int) -> None:
    for i in range(n):
        project = make_project(owner, name=f"P{len(str(n))}-{i}")
        character = CharacterFactory(project=project)
        job = JobFactory(project=project, character=character, status=JobStatus.RUNNING)
        AssetFactory(project=project, job=job)


@pytest.mark.parametrize("name", ["dashboard", "project-list", "character-list", "job-list", "gallery"])
def test_pages_run_a_constant_number_of_queries(owner_client, owner, name, django_assert_max_num_queries):
    _rows(owner, 3)
    with django_assert_max_num_queries(14) as small:
        assert owner_client.get(reverse(name)).status_code == 200
    _rows(owner, 27)
    with django_assert_max_num_queries(len(small.captured_queries)) as large:
        response = owner_client.get(reverse(name))
    assert response.status_code == 200
    assert len(large.captured_queries) == len(small.captured_queries)
