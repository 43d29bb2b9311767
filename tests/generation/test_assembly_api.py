"""``POST /api/v1/episodes/{id}/assemble``, ``film`` on the episode, ``/api/v1/assemblies`` and the film
asset's ``frames``/``fps``/``duration``/``mime``/``chapters``; who may do what."""

from __future__ import annotations

import pytest

from generation.assembly_task import assembly_run
from generation.models import Assembly
from projects.models import Episode, Scene
from tests.generation.test_assembly_task import clip_asset, scene_with_segments

pytestmark = pytest.mark.django_db


@pytest.fixture
def episode(project):
    return Episode.objects.create(project=project, number=1, title="Pilot")


@pytest.fixture
def generated(episode, tmp_path):
    for number in (1, 2):
        first = clip_asset(episode.project, tmp_path, f"s{number}a.mp4", range(0, 5))
        second = clip_asset(episode.project, tmp_path, f"s{number}b.mp4", range(4, 8))
        scene_with_segments(episode, number, [first, second], title=f"Scene {'AB'[number - 1]}")
    return episode


@pytest.fixture
def pushed(monkeypatch):
    from generation import tasks

    calls = []
    monkeypatch.setattr(tasks, "async_task", lambda path, *args, **kw: calls.append((path, *args)))
    return calls


@pytest.fixture(autouse=True)
def _quiet_events(monkeypatch):
    from generation import events

    monkeypatch.setattr(events, "movie_event", lambda *args, **kwargs: None)


def assemble(client, episode, body=None):
    return client.post(f"/api/v1/episodes/{episode.pk}/assemble", body or {}, format="json")


def test_assemble_answers_202_with_the_queued_assembly_then_film_and_asset_report_it(
    api_member, generated, member, pushed, django_capture_on_commit_callbacks
):
    assert api_member.get(f"/api/v1/episodes/{generated.pk}").json()["film"] is None

    with django_capture_on_commit_callbacks(execute=True):
        response = assemble(api_member, generated, {"container": "mp4", "crossfade_frames": 0})

    assert response.status_code == 202, response.content
    job = response.json()
    assert (job["status"], job["progress"], job["asset"], job["chapters"]) == ("queued", 0.0, None, [])
    assert (job["episode"], job["container"], job["created_by"]) == (generated.pk, "mp4", member.pk)
    assert pushed == [("generation.assembly_task.assembly_task", job["id"])]

    assembly_run(assembly_id=job["id"])

    done = api_member.get(f"/api/v1/assemblies/{job['id']}").json()
    assert (done["status"], done["progress"], done["stream_copy"]) == ("succeeded", 1.0, False)
    assert [c["title"] for c in done["chapters"]] == ["Scene A", "Scene B"]
    episode = api_member.get(f"/api/v1/episodes/{generated.pk}").json()
    assert episode["film"] == done["asset"] is not None
    listed = api_member.get(f"/api/v1/episodes?project={generated.project_id}").json()["results"]
    assert [e["film"] for e in listed] == [done["asset"]]

    asset = api_member.get(f"/api/v1/assets/{done['asset']}").json()
    assert (asset["frames"], asset["fps"], asset["mime"]) == (16, 24.0, "video/mp4")
    assert asset["duration"] == pytest.approx(16 / 24, abs=0.001)
    assert asset["chapters"] == done["chapters"]
    assert asset["chapters"][1] == {"title": "Scene B", "start": round(8 / 24, 3), "end": round(16 / 24, 3)}


def test_the_newest_film_is_the_episodes(api_owner, generated, owner, pushed):
    first = assemble(api_owner, generated).json()["id"]
    assembly_run(assembly_id=first)
    second = assemble(api_owner, generated, {"container": "webm"}).json()["id"]
    assembly_run(assembly_id=second)
    film = api_owner.get(f"/api/v1/episodes/{generated.pk}").json()["film"]
    assert film == Assembly.objects.get(pk=second).asset_id != Assembly.objects.get(pk=first).asset_id
    # a failed or running assembly does not replace the film
    Assembly.objects.create(project=generated.project, episode=generated, status="failed")
    assert api_owner.get(f"/api/v1/episodes/{generated.pk}").json()["film"] == film


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"container": "avi"}, "container"),
        ({"crossfade_frames": -1}, "crossfade_frames"),
        ({"crossfade_frames": 500}, "crossfade_frames"),
        ({"crossfade_frames": "many"}, "crossfade_frames"),
    ],
)
def test_bad_options_are_a_400_naming_the_field(api_owner, generated, pushed, body, field):
    response = assemble(api_owner, generated, body)
    assert response.status_code == 400 and field in response.json()
    assert not Assembly.objects.exists() and pushed == []


def test_an_episode_with_no_scenes_or_no_generated_scene_is_a_clear_400(api_owner, episode, pushed):
    response = assemble(api_owner, episode)
    assert response.status_code == 400
    assert "the episode has no scenes" in response.json()["non_field_errors"][0]

    Scene.objects.create(episode=episode, number=1, title="Dawn")
    response = assemble(api_owner, episode)
    assert response.status_code == 400 and "complete segments" in response.json()["non_field_errors"][0]
    assert not Assembly.objects.exists() and pushed == []


def test_access_outsider_404_viewer_403_anonymous_401(api_outsider, api_viewer, api_anonymous, generated, pushed):
    assert assemble(api_outsider, generated).status_code == 404
    assert assemble(api_viewer, generated).status_code == 403
    assert assemble(api_anonymous, generated).status_code in (401, 403)
    assert not Assembly.objects.exists()

    assembly = Assembly.objects.create(project=generated.project, episode=generated)
    assert api_outsider.get(f"/api/v1/assemblies/{assembly.pk}").status_code == 404
    assert api_outsider.get("/api/v1/assemblies").json()["results"] == []
    assert api_outsider.get(f"/api/v1/episodes/{generated.pk}").status_code == 404
    assert api_viewer.get(f"/api/v1/assemblies/{assembly.pk}").json()["status"] == "queued"
    assert api_viewer.get(f"/api/v1/assemblies?episode={generated.pk}").json()["count"] == 1
    assert api_viewer.get("/api/v1/assemblies/abc").status_code == 404
    # read-only: no writes through /assemblies
    assert api_viewer.delete(f"/api/v1/assemblies/{assembly.pk}").status_code == 405


def test_episode_crud_still_works_through_the_film_viewset(api_owner, project):
    created = api_owner.post("/api/v1/episodes", {"project": project.pk, "title": "Two"}, format="json")
    assert created.status_code == 201 and created.json()["film"] is None
    patched = api_owner.patch(f"/api/v1/episodes/{created.json()['id']}", {"title": "Deux"}, format="json")
    assert patched.status_code == 200 and patched.json()["title"] == "Deux" and patched.json()["film"] is None
