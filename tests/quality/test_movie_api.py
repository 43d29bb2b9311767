"""Scenes API for movie production (issue 20 item 6): characters, duration, status, generate, segments."""

from __future__ import annotations

import pytest

from projects.models import Scene
from quality.models import SceneRun, Segment
from tests.generation.engine_helpers import shipped
from tests.quality.movie_chain_helpers import SEGMENT, cast, drive_scene, fail_segment, movie_project, scene_with
from tests.support.personas import api_client_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner, member, viewer):
    from projects.services import project_member_set

    project = movie_project(owner)
    project_member_set(project=project, username=member.username, role="editor")
    project_member_set(project=project, username=viewer.username, role="viewer")
    return project


@pytest.fixture
def kai(project, owner):
    return cast(project, owner)


@pytest.fixture
def scene(project, kai):
    return scene_with(project, [kai], duration=1.0, title="Rooftop")


def test_a_scene_is_created_with_its_characters_and_duration(project, kai, owner, member):
    aiko = cast(project, owner, name="Aiko", seed=2)
    episode = project.episodes.create(number=1, title="Pilot")
    api = api_client_for(member)

    answer = api.post(
        "/api/v1/scenes/",
        {"episode": episode.pk, "title": "Gate", "duration_seconds": 4.5, "characters": [aiko.pk, kai.pk]},
        format="json",
    )

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert (body["duration_seconds"], body["status"], body["characters"]) == (4.5, "pending", sorted([aiko.pk, kai.pk]))
    scene = Scene.objects.get(pk=body["id"])
    # the order given is kept: Aiko's reference starts the scene
    from quality.movie.chain_steps import first_character

    assert first_character(scene) == aiko
    patched = api.patch(f"/api/v1/scenes/{scene.pk}/", {"characters": [kai.pk]}, format="json")
    assert patched.status_code == 200 and patched.json()["characters"] == [kai.pk]
    assert api.get(f"/api/v1/scenes/{scene.pk}/").json()["status"] == "pending"


def test_bad_scene_input_is_a_400_with_nothing_written(project, kai, owner, outsider):
    from tests.factories import make_project
    from tests.quality.movie_chain_helpers import cast as cast_in

    elsewhere = cast_in(make_project(outsider, name="Elsewhere"), outsider, name="Stranger")
    episode = project.episodes.create(number=1, title="Pilot")
    api = api_client_for(owner)
    for body, field in (
        ({"duration_seconds": 0}, "duration_seconds"),
        ({"duration_seconds": -3}, "duration_seconds"),
        ({"duration_seconds": 601}, "duration_seconds"),
        ({"characters": [elsewhere.pk]}, "non_field_errors"),
        ({"characters": ["x"]}, "characters"),
    ):
        answer = api.post("/api/v1/scenes/", {"episode": episode.pk, "title": "Gate", **body}, format="json")
        assert answer.status_code == 400, body
        assert field in answer.json(), answer.json()
    assert not Scene.objects.exists()
    scene = scene_with(project, [kai], episode=episode)
    answer = api.patch(f"/api/v1/scenes/{scene.pk}/", {"characters": [elsewhere.pk]}, format="json")
    assert answer.status_code == 400 and f"no character {elsewhere.pk}" in answer.json()["non_field_errors"][0]
    assert list(scene.characters.all()) == [kai]
    assert api.patch(f"/api/v1/scenes/{scene.pk}/", {"status": "complete"}, format="json").json()["status"] == "pending"


def test_generate_returns_the_run_its_segments_and_jobs(fake, engine, scene, member):
    api = api_client_for(member)

    answer = api.post(f"/api/v1/scenes/{scene.pk}/generate/", {"template": SEGMENT, "segments": 2}, format="json")

    assert answer.status_code == 201, answer.json()
    body = answer.json()
    run = SceneRun.objects.get()
    assert (body["run"]["id"], body["run"]["template"], body["run"]["segments_planned"]) == (run.pk, SEGMENT, 2)
    assert [(s["number"], s["status"]) for s in body["segments"]] == [(1, "running"), (2, "pending")]
    first = Segment.objects.get(run=run, number=1)
    assert body["jobs"] == [first.job_id] and body["segments"][0]["jobs"] == [first.job_id]
    assert api.get(f"/api/v1/scenes/{scene.pk}/").json()["status"] == "running"

    drive_scene(run, engine)

    listed = api.get(f"/api/v1/scenes/{scene.pk}/segments/").json()
    assert [(s["number"], s["status"]) for s in listed] == [(1, "complete"), (2, "complete")]
    assert listed[1]["first_frame"] == listed[0]["last_frame"] and listed[1]["join_passed"] is True
    assert all(s["output"] and s["seed"] is not None and s["prompt_id"] for s in listed)
    assert api.get(f"/api/v1/scenes/{scene.pk}/").json()["status"] == "complete"


def test_generate_refuses_bad_requests_with_a_400(fake, engine, project, scene, owner):
    api = api_client_for(owner)
    lonely = scene_with(project, [], title="Empty")
    shipped("weightless-image")
    blind = shipped(SEGMENT)
    blind.pk, blind.project, blind.slug = None, project, "blind-segment"
    blind.bindings = {k: v for k, v in blind.bindings.items() if k != "init_image"}
    blind.save()
    for target, body, message in (
        (lonely, {"template": SEGMENT}, "the scene has no character"),
        (scene, {"template": "blind-segment"}, "has no image input"),
        (scene, {"template": "weightless-image"}, "needs a template of kind segment"),
        (scene, {"template": "nope"}, "no workflow template 'nope'"),
    ):
        answer = api.post(f"/api/v1/scenes/{target.pk}/generate/", body, format="json")
        assert answer.status_code == 400, body
        assert message in answer.json()["non_field_errors"][0]
    for body in ({"segments": 0}, {"segments": 65}, {"segments": "many"}):
        answer = api.post(f"/api/v1/scenes/{scene.pk}/generate/", {"template": SEGMENT, **body}, format="json")
        assert answer.status_code == 400 and "segments" in answer.json()
    assert not SceneRun.objects.exists()
    assert api.post(f"/api/v1/scenes/{scene.pk}/generate/", {"template": SEGMENT}, format="json").status_code == 201
    again = api.post(f"/api/v1/scenes/{scene.pk}/generate/", {"template": SEGMENT}, format="json")
    assert again.status_code == 400 and "already being generated" in again.json()["non_field_errors"][0]


def test_who_may_generate_and_read_segments(fake, engine, scene, viewer, outsider):
    url = f"/api/v1/scenes/{scene.pk}"
    assert api_client_for(outsider).post(f"{url}/generate/", {"template": SEGMENT}, format="json").status_code == 404
    assert api_client_for(outsider).get(f"{url}/segments/").status_code == 404
    assert api_client_for(viewer).post(f"{url}/generate/", {"template": SEGMENT}, format="json").status_code == 403
    assert api_client_for(None).get(f"{url}/segments/").status_code in (401, 403)
    assert not SceneRun.objects.exists()
    assert api_client_for(viewer).get(f"{url}/segments/").json() == []


def test_retry_a_failed_segment_returns_the_run_going_on_from_it(fake, engine, project, scene, member, viewer):
    project.max_join_regenerations = 0
    project.save(update_fields=["max_join_regenerations"])
    api = api_client_for(member)
    url = f"/api/v1/scenes/{scene.pk}/segments"
    assert api.post(f"{url}/1/retry/").status_code == 404  # not generated yet
    answer = api.post(f"/api/v1/scenes/{scene.pk}/generate/", {"template": SEGMENT, "segments": 2}, format="json")
    run = fail_segment(SceneRun.objects.get(pk=answer.json()["run"]["id"]), 2, engine)
    assert run.status == "failed"
    failed_job = Segment.objects.get(run=run, number=2).job_id

    refused = api.post(f"{url}/1/retry/")
    assert refused.status_code == 400 and "only a failed segment" in str(refused.json())
    assert api_client_for(viewer).post(f"{url}/2/retry/").status_code == 403
    assert api.post(f"{url}/3/retry/").status_code == 404
    answer = api.post(f"{url}/2/retry/")

    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert (body["run"]["id"], body["run"]["status"], body["run"]["reasons"]) == (run.pk, "running", [])
    assert [(s["number"], s["status"], s["attempts"]) for s in body["segments"]] == [
        (1, "complete", 1),
        (2, "running", 1),
    ]
    second = Segment.objects.get(run=run, number=2)
    assert second.job_id != failed_job and body["jobs"] == sorted(
        [*body["segments"][0]["jobs"], failed_job, second.job_id]
    )
    assert api.post(f"{url}/2/retry/").status_code == 400  # running: not submitted twice
    assert drive_scene(run, engine).status == "complete"
    assert api.get(f"/api/v1/scenes/{scene.pk}/").json()["status"] == "complete"


def test_memory_is_read_carried_and_patched_with_its_change_log(project, kai, scene, member, viewer, outsider):
    later = scene_with(project, [kai], title="Street")
    api = api_client_for(member)

    answer = api.patch(
        f"/api/v1/scenes/{scene.pk}/memory/",
        {"memory": {"story": {"tension": 7}, "characters": {str(kai.pk): {"outfit": "red coat"}}}},
        format="json",
    )

    assert answer.status_code == 200, answer.json()
    assert answer.json()["memory"]["story"] == {"tension": 7}
    [change] = answer.json()["changes"]
    assert change["user"] == member.username
    assert {c["path"]: c["new"] for c in change["changes"]} == {
        "story.tension": 7,
        f"characters.{kai.pk}.outfit": "red coat",
    }
    # the next scene carries it until it sets its own
    carried = api.get(f"/api/v1/scenes/{later.pk}/memory/").json()
    assert carried["memory"] == {} and carried["effective"]["story"]["tension"] == 7
    patched = api.patch(f"/api/v1/scenes/{later.pk}/", {"memory": {"story": {"tension": 2}}}, format="json")
    assert patched.status_code == 200 and patched.json()["memory"] == {"story": {"tension": 2}}
    assert api.get(f"/api/v1/scenes/{later.pk}/memory/").json()["effective"]["story"]["tension"] == 2
    # bad input names the path; a viewer cannot write, an outsider cannot see
    bad = api.patch(f"/api/v1/scenes/{later.pk}/memory/", {"memory": {"story": {"tension": 11}}}, format="json")
    assert bad.status_code == 400 and "story.tension" in str(bad.json())
    url = f"/api/v1/scenes/{scene.pk}/memory/"
    assert api_client_for(viewer).get(url).status_code == 200
    assert api_client_for(viewer).patch(url, {"memory": {"story": {"tension": 1}}}, format="json").status_code == 403
    assert api_client_for(outsider).get(url).status_code == 404
    scene.refresh_from_db()
    assert scene.memory["story"] == {"tension": 7} and scene.memory_changes.count() == 1


def test_a_closed_phase_gate_is_a_400_unless_an_editor_forces_it(fake, engine, project, kai, owner, member):
    import io

    from characters.services import character_add_reference, character_create
    from tests.quality.movie_chain_helpers import textured_png

    rin = character_create(project=project, name="Rin", design_prompt="1girl")
    character_add_reference(character=rin, upload=io.BytesIO(textured_png(3)), original_name="rin.png")
    scene = scene_with(project, [rin], duration=1.0, title="Closed")
    api = api_client_for(member)
    url = f"/api/v1/scenes/{scene.pk}/generate/"

    refused = api.post(url, {"template": SEGMENT, "segments": 2}, format="json")

    assert refused.status_code == 400 and "Rin's phase 2 gate is closed" in str(refused.json())
    assert not SceneRun.objects.exists()
    forced = api.post(url, {"template": SEGMENT, "segments": 2, "force_reason": "storyboard test"}, format="json")
    assert forced.status_code == 201, forced.json()
    run = SceneRun.objects.get()
    assert drive_scene(run, engine).status == "complete"
    jobs = [s.job for s in Segment.objects.filter(run=run).order_by("number")]
    assert [job.forced_reason for job in jobs] == ["storyboard test"] * 2
    assert all("force_reason" not in job.overrides for job in jobs)
