"""Backends from the studio: staff add, edit, enable/disable and check them; a new backend is
checked when it is added (not "down" until the next minute's poll); others get a 403."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from generation.models import Backend
from tests.factories import BackendFactory, UserFactory
from tests.fakes.comfyui import FakeComfy

pytestmark = pytest.mark.django_db(transaction=True)  # the check runs on commit


@pytest.fixture
def staff():
    return UserFactory(username="ops", is_staff=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_backend_added_in_the_studio_is_checked_at_once(staff, tmp_path):
    with FakeComfy(root=tmp_path / "comfy") as fake:
        response = client_for(staff).post(
            reverse("backend-create"),
            {"name": "gpu-1", "url": fake.url, "enabled": "on", "max_in_flight": 2, "vram_hold_threshold": 0.8},
            follow=True,
        )
    backend = Backend.objects.get(name="gpu-1")
    assert backend.healthy and backend.last_seen_at is not None and backend.node_classes
    html = response.content.decode()
    assert "gpu-1 is reachable" in html and "data-health>healthy<" in html


def test_check_now_edit_and_disable(staff, tmp_path):
    backend = BackendFactory(name="gpu-2", url="http://127.0.0.1:9", healthy=True)
    client = client_for(staff)
    response = client.post(reverse("backend-action", args=[backend.pk, "check"]), follow=True)
    backend.refresh_from_db()
    assert not backend.healthy and "gpu-2 is down" in response.content.decode()
    with FakeComfy(root=tmp_path / "comfy") as fake:
        edit = {"name": "gpu-2", "url": fake.url, "enabled": "on", "max_in_flight": 3, "vram_hold_threshold": 0.9}
        client.post(reverse("backend-edit", args=[backend.pk]), edit)
        backend.refresh_from_db()
        assert backend.healthy and backend.max_in_flight == 3  # a new URL is checked at once
        client.post(reverse("backend-action", args=[backend.pk, "disable"]))
        assert not Backend.objects.get(pk=backend.pk).enabled
        Backend.objects.filter(pk=backend.pk).update(healthy=False)
        client.post(reverse("backend-action", args=[backend.pk, "enable"]))
        backend.refresh_from_db()
        assert backend.enabled and backend.healthy  # enabling checks it too


def test_a_bad_form_is_shown_inline(staff):
    response = client_for(staff).post(reverse("backend-create"), {"name": "", "url": "not a url", "max_in_flight": 0})
    assert response.status_code == 400 and b"errorlist" in response.content
    assert not Backend.objects.exists()


@pytest.mark.parametrize("name", ["owner", "outsider"])
def test_only_staff_manage_backends(name, request, project):
    user = request.getfixturevalue(name)
    backend = BackendFactory(name="gpu-3")
    client = client_for(user)
    assert client.get(reverse("backend-list")).status_code == 403
    assert client.post(reverse("backend-create"), {"name": "x", "url": "http://127.0.0.1:1"}).status_code == 403
    assert client.post(reverse("backend-action", args=[backend.pk, "disable"])).status_code == 403
    assert Backend.objects.get(pk=backend.pk).enabled and Backend.objects.count() == 1
    assert Client().get(reverse("backend-list")).status_code == 302  # anonymous: to the login page


def test_the_dashboard_hint_links_to_the_backends_page(staff, owner):
    html = client_for(staff).get(reverse("dashboard")).content.decode()
    assert f'href="{reverse("backend-list")}">Add one</a>' in html
    assert "Ask a staff member" in client_for(owner).get(reverse("dashboard")).content.decode()


def test_a_backend_added_in_the_admin_is_checked_at_once(admin_client, tmp_path):
    with FakeComfy(root=tmp_path / "comfy") as fake:
        form = {"name": "gpu-4", "url": fake.url, "enabled": "on", "max_in_flight": 2, "vram_hold_threshold": 0.8}
        response = admin_client.post(reverse("admin:generation_backend_add"), form)
    assert response.status_code == 302
    assert Backend.objects.get(name="gpu-4").healthy
