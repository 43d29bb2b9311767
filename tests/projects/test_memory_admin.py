"""The scene admin shows the scene's memory (its own and the one in force) and its change log, read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from projects.memory import memory_update
from projects.models import SceneMemoryChange
from projects.services import episode_create, scene_create

pytestmark = pytest.mark.django_db


def test_scene_admin_shows_memory_and_its_change_log_read_only(admin_client, admin_user, project):
    episode = episode_create(project=project, title="Pilot")
    first = scene_create(episode=episode, title="Rooftop")
    second = scene_create(episode=episode, title="Station")
    memory_update(scene=first, user=admin_user, patch={"story": {"story_beat": "the chase"}})
    memory_update(scene=second, user=admin_user, patch={"style": {"lighting": "neon"}})
    memory_update(scene=second, user=admin_user, patch={"style": {"lighting": "dawn light"}})
    url = reverse("admin:projects_scene_change", args=[second.pk])

    page = admin_client.get(url).content.decode()
    assert "Memory set on this scene" in page and "dawn light" in page
    assert "the chase" in page  # carried from the first scene, in the memory in force
    assert page.count("style.lighting") == 2  # both changes, newest first
    assert page.index("&quot;old&quot;: &quot;neon&quot;") < page.index("&quot;new&quot;: &quot;neon&quot;")
    assert 'name="memory"' not in page  # not editable here: it would bypass the change log
    assert "memory_changes-0-DELETE" not in page

    form = {
        "episode": str(episode.pk),
        "number": "2",
        "title": "Station 2",
        "duration_seconds": "5",
        "status": "pending",
        "description": "",
        "mood": "",
        "camera": "",
        "lighting": "",
        "continuity": "{}",
        "memory": '{"story": {"tension": 9}}',
        "memory_changes-TOTAL_FORMS": "0",
        "memory_changes-INITIAL_FORMS": "2",
        "memory_changes-MIN_NUM_FORMS": "0",
        "memory_changes-MAX_NUM_FORMS": "1000",
    }
    response = admin_client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:2000]
    second.refresh_from_db()
    assert second.title == "Station 2" and second.memory == {"style": {"lighting": "dawn light"}}
    assert SceneMemoryChange.objects.filter(scene=second).count() == 2
