"""The scene page (timeline): Generate on the fake ComfyUI, the segments' frames, scores, joins and
status, Retry, the continuity memory form, who may do what, and the live fragments of both pages."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from generation.events import CHANNEL_MESSAGE_TYPE, project_group, scene_group
from generation.models import Job, JobStatus
from projects.memory import memory_update
from projects.models import SceneMemoryChange
from projects.selectors import scene_get_for_user
from projects.services import project_member_set
from quality.models import PhaseGate, SceneRun, Segment, SegmentStatus
from quality.movie_live import movie_page_fragments
from tests.factories import JobFactory
from tests.quality.movie_chain_helpers import SEGMENT, cast, drive_scene, movie_project, scene_with
from tests.support.personas import OUTSIDER, VIEWER, persona

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def project(owner):
    project = movie_project(owner)
    project_member_set(project=project, username=persona(VIEWER).username, role="viewer")
    return project


@pytest.fixture
def kai(project, owner):
    return cast(project, owner)


@pytest.fixture
def scene(project, kai):
    return scene_with(project, [kai], duration=1.0, title="Rooftop")


def generate(client, scene, **data):
    return client.post(f"/scenes/{scene.pk}/generate/", {"template": SEGMENT, **data})


def test_generate_from_the_page_and_the_timeline_shows_frames_scores_and_joins(fake, engine, scene, owner):
    client = client_for(owner)
    page = client.get(f"/scenes/{scene.pk}/").content.decode()
    assert f'<option value="{SEGMENT}"' in page and "data-no-segments" in page
    assert f'ws-connect="/ws/pages/?scene={scene.pk}"' in page

    response = generate(client, scene, segments="2", motion_prompt="walks to the window")

    assert response.status_code == 302 and response["Location"] == f"/scenes/{scene.pk}/"
    run = SceneRun.objects.get(scene=scene)
    assert (run.segments_planned, run.created_by, run.template.slug) == (2, owner, SEGMENT)
    running = client.get(f"/scenes/{scene.pk}/").content.decode()
    assert 'data-segment-status="running"' in running and 'data-action="retry"' not in running
    run = drive_scene(run, engine)
    assert run.status == "complete", run.reasons

    page = client.get(f"/scenes/{scene.pk}/").content.decode()
    first, second = Segment.objects.filter(run=run).order_by("number")
    assert page.index('data-segment="1"') < page.index('data-segment="2"')
    assert f'src="{first.first_frame.file.url}"' in page and f'src="{first.last_frame.file.url}"' in page
    assert f'src="{second.last_frame.file.url}"' in page and f'data-asset="{second.output_id}"' in page
    assert f"{first.frame_consistency:.3f}" in page and f"{second.join_ssim:.3f}" in page
    assert 'data-join="2" data-verdict="passed"' in page and 'data-scene-status="complete"' in page
    assert "walks to the window" in page and 'data-action="retry"' not in page
    # the frames are served to the project's people (input images live under inputs/<project>/), not outsiders
    assert b"".join(client.get(second.last_frame.file.url).streaming_content)[:8] == b"\x89PNG\r\n\x1a\n"
    assert client_for(persona(VIEWER)).get(first.first_frame.file.url).status_code == 200
    assert client_for(persona(OUTSIDER)).get(second.last_frame.file.url).status_code == 404
    storyboard = client.get(f"/episodes/{scene.episode_id}/").content.decode()
    assert f'src="/assets/{first.output_id}/thumb/"' in storyboard
    assert 'data-join="2" data-verdict="passed"' in storyboard


def test_retry_of_a_join_out_of_attempts_goes_on_from_that_segment(fake, engine, project, scene, owner):
    project.max_join_regenerations = 0
    project.save(update_fields=["max_join_regenerations"])
    run = scene_generate_as(owner, scene)
    Segment.objects.filter(run=run, number=2).update(params={"discontinuity": 1.0})  # a cut: its join fails
    run = drive_scene(run, engine)
    assert run.status == "failed"
    first, second = run.segments.order_by("number")
    assert (second.status, second.join_passed) == ("failed", False)
    client = client_for(owner)
    page = client.get(f"/scenes/{scene.pk}/").content.decode()
    assert page.count('data-action="retry"') == 1 and f'action="/segments/{second.pk}/retry/"' in page
    assert "Retry from the failed join" in page

    refused = client.post(f"/segments/{first.pk}/retry/")  # segment 1 did not fail
    assert refused.status_code == 400 and "only a failed segment can be retried" in refused.content.decode()
    failed_job = second.job_id
    response = client.post(f"/segments/{second.pk}/retry/")

    assert response.status_code == 302
    assert SceneRun.objects.filter(scene=scene).count() == 1  # the same run goes on
    first_after, second_after = run.segments.order_by("number")
    assert (first_after.status, first_after.output_id, first_after.job_id) == (
        "complete",
        first.output_id,
        first.job_id,
    )
    assert second_after.status == "running" and second_after.attempts == 1 and second_after.job_id != failed_job
    assert second_after.first_frame_id == first.last_frame_id
    page = client.get(f"/scenes/{scene.pk}/").content.decode()
    assert 'data-scene-status="running"' in page and 'data-action="retry"' not in page
    assert client.post(f"/segments/{second.pk}/retry/").status_code == 400  # running now: nothing more submitted
    assert second_after.jobs.count() == 2


def scene_generate_as(user, scene):
    from quality.movie.chain import scene_generate

    return scene_generate(scene=scene, user=user, template=SEGMENT, segments=2)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"template": "weightless-image"}, "Select a valid choice"),
        ({"segments": "0"}, "greater than or equal to 1"),
        ({"segments": "65"}, "less than or equal to 64"),
        ({"segments": "two"}, "Enter a whole number"),
    ],
)
def test_bad_generate_input_says_why_and_starts_nothing(fake, engine, scene, owner, data, message):
    response = generate(client_for(owner), scene, **data)
    assert response.status_code == 400 and message in response.content.decode()
    assert not SceneRun.objects.exists() and not Job.objects.exists()


def test_a_refusal_of_the_chain_is_said_on_the_page(fake, engine, project, scene, owner):
    kai = scene.characters.get()
    kai.references.all().delete()

    response = generate(client_for(owner), scene)

    assert response.status_code == 400 and "has no reference image" in response.content.decode()
    assert not SceneRun.objects.exists()


def test_a_closed_phase_gate_is_said_and_a_reason_lets_an_editor_go_ahead(fake, engine, project, scene, owner):
    PhaseGate.objects.filter(project=project).delete()  # Kai's animation phase is closed again
    client = client_for(owner)

    refused = generate(client, scene, segments="1")

    assert refused.status_code == 400 and "phase 2 gate is closed" in refused.content.decode()
    assert not SceneRun.objects.exists()
    assert generate(client, scene, segments="1", force_reason="storyboard check").status_code == 302
    run = drive_scene(SceneRun.objects.get(), engine)
    assert run.status == "complete" and run.segments.get().job.forced_reason == "storyboard check"


def test_the_memory_form_shows_carried_and_set_entries_and_records_who_changed_what(project, kai, scene, owner):
    earlier = scene_with(project, [kai], number=None, duration=1.0, title="Before")
    # "earlier" was added after "scene": make it the first scene so that it carries into "scene".
    from projects.scenes import scene_move

    scene_move(scene=earlier, position=1)
    scene.refresh_from_db()
    memory_update(scene=earlier, user=owner, patch={"story": {"tension": 3}, "style": {"lighting": "dusk"}})
    client = client_for(owner)

    page = client.get(f"/scenes/{scene.pk}/").content.decode()
    assert 'data-entry="style.lighting" data-source="carried"' in page and 'placeholder="carried: dusk"' in page

    response = client.post(
        f"/scenes/{scene.pk}/memory/",
        {
            "story.tension": "7",
            "style.style_keywords": "rain, neon",
            f"characters.{kai.pk}.outfit": "red coat",
            "style.lighting": "",  # left empty: still carried
        },
    )

    assert response.status_code == 302
    scene.refresh_from_db()
    assert scene.memory == {
        "story": {"tension": 7},
        "style": {"style_keywords": ["rain", "neon"]},
        "characters": {str(kai.pk): {"outfit": "red coat"}},
    }
    change = SceneMemoryChange.objects.get(scene=scene)
    assert change.user == owner and {"path": "story.tension", "old": None, "new": 7} in change.changes
    page = client.get(f"/scenes/{scene.pk}/").content.decode()
    assert 'data-entry="story.tension" data-source="set"' in page and "(carried: 3)" in page
    assert 'data-entry="style.lighting" data-source="carried"' in page
    assert "story.tension" in page and "owner" in page[page.index("data-memory-change") :]

    # emptying an entry set here unsets it: the carried value shows again
    client.post(f"/scenes/{scene.pk}/memory/", {"story.tension": "", "style.style_keywords": "rain, neon"})
    scene.refresh_from_db()
    assert "story" not in scene.memory and SceneMemoryChange.objects.filter(scene=scene).count() == 2


@pytest.mark.parametrize(
    "data, message",
    [({"story.tension": "11"}, "less than or equal to 10"), ({"style.lighting": "x" * 501}, "at most 500")],
)
def test_bad_memory_input_says_why_and_changes_nothing(scene, owner, data, message):
    response = client_for(owner).post(f"/scenes/{scene.pk}/memory/", data)

    assert response.status_code == 400 and message in response.content.decode()
    scene.refresh_from_db()
    assert scene.memory == {} and not SceneMemoryChange.objects.exists()


def test_the_viewer_reads_the_scene_without_write_controls_and_is_refused(fake, engine, scene, owner):
    run = drive_scene(scene_generate_as(owner, scene), engine)
    second = run.segments.get(number=2)
    Segment.objects.filter(pk=second.pk).update(status=SegmentStatus.FAILED)
    memory_update(scene=scene, user=owner, patch={"story": {"pacing": "slow"}})
    client = client_for(persona(VIEWER))

    page = client.get(f"/scenes/{scene.pk}/").content.decode()
    assert 'data-segment="2"' in page and "slow" in page
    for marker in ("data-generate", 'data-action="retry"', "data-memory-form", 'name="story.pacing"', "Edit scene"):
        assert marker not in page, marker
    assert generate(client, scene).status_code == 403
    assert client.post(f"/segments/{second.pk}/retry/").status_code == 403
    assert client.post(f"/scenes/{scene.pk}/memory/", {"story.pacing": "fast"}).status_code == 403
    assert SceneRun.objects.count() == 1 and SceneMemoryChange.objects.count() == 1


def test_an_outsider_gets_404_for_the_scene_and_its_actions(scene, owner):
    run = SceneRun.objects.create(scene=scene, segments_planned=1, status=SegmentStatus.FAILED)
    segment = Segment.objects.create(run=run, scene=scene, number=1, status=SegmentStatus.FAILED)
    client = client_for(persona(OUTSIDER))
    assert client.get(f"/scenes/{scene.pk}/").status_code == 404
    for url in (f"/scenes/{scene.pk}/generate/", f"/scenes/{scene.pk}/memory/", f"/segments/{segment.pk}/retry/"):
        assert client.post(url, {"template": SEGMENT, "story.pacing": "x"}).status_code == 404, url
    assert client.post("/segments/999999/retry/").status_code == 404
    assert SceneRun.objects.count() == 1 and not SceneMemoryChange.objects.exists()


# --- live --------------------------------------------------------------------------------------


def test_live_fragments_follow_the_scene_its_segment_jobs_and_the_episode(project, scene, kai, owner):
    other = scene_with(project, [kai], duration=1.0, title="Elsewhere")
    job = JobFactory(project=project, status=JobStatus.RUNNING, progress=0.5)
    stranger_job = JobFactory(project=project, status=JobStatus.RUNNING)
    run = SceneRun.objects.create(scene=scene, segments_planned=1)
    segment = Segment.objects.create(run=run, scene=scene, number=1, status=SegmentStatus.RUNNING, job=job)
    segment.jobs.add(job)

    def fragments(event, page="scene", page_id=scene.pk, user=owner):
        return movie_page_fragments(user=user, event=event, page=page, page_id=page_id, csrf_token="t")

    timeline = fragments({"type": "segment_complete", "scene": scene.pk, "episode": scene.episode_id})
    assert f'id="timeline-{scene.pk}" hx-swap-oob="true"' in timeline and 'data-segment="1"' in timeline
    assert fragments({"type": "segment_complete", "scene": other.pk, "episode": scene.episode_id}) == ""
    progress = fragments({"type": "progress", "job": job.pk, "value": 1, "max": 2})
    assert f'id="segment-job-{job.pk}" hx-swap-oob="true"' in progress and "50%" in progress
    assert fragments({"type": "progress", "job": stranger_job.pk}) == ""
    assert 'data-segment="1"' in fragments({"type": "job_complete", "job": job.pk})
    assert fragments({"type": "job_complete", "job": stranger_job.pk}) == ""
    assert fragments({"type": "segment_complete", "scene": scene.pk}, user=persona(OUTSIDER)) == ""

    board = fragments({"type": "scene_complete", "episode": scene.episode_id}, "episode", scene.episode_id)
    assert f'id="storyboard-{scene.episode_id}" hx-swap-oob="true"' in board and 'id="film-' not in board
    film = fragments({"type": "assembly_complete", "episode": scene.episode_id}, "episode", scene.episode_id)
    assert f'id="film-{scene.episode_id}" hx-swap-oob="true"' in film
    assert "data-segment-job" not in fragments({"type": "job_complete", "job": job.pk}, "episode", scene.episode_id)
    assert "storyboard" in fragments({"type": "job_complete", "job": job.pk}, "episode", scene.episode_id)


SAME_ORIGIN = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


async def _socket(user, query: str) -> tuple[WebsocketCommunicator, bool]:
    from tower.asgi import application

    client = await database_sync_to_async(client_for)(user)
    cookie = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items()).encode()
    headers = [*SAME_ORIGIN, (b"cookie", cookie)]
    communicator = WebsocketCommunicator(application, f"/ws/pages/?{query}", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def test_the_scene_socket_sends_the_timeline_and_refuses_outsiders(scene, owner):
    from channels.layers import get_channel_layer

    outsider = await database_sync_to_async(persona)(OUTSIDER)
    refused, _ = await _socket(outsider, f"scene={scene.pk}")
    assert (await refused.receive_output(timeout=3))["code"] == 4404
    await refused.disconnect()

    communicator, connected = await _socket(owner, f"scene={scene.pk}")
    assert connected
    project_id = await database_sync_to_async(lambda: scene_get_for_user(user=owner, pk=scene.pk).episode.project_id)()
    event = {"type": "scene_complete", "scene": scene.pk, "episode": scene.episode_id, "project": project_id}
    await get_channel_layer().group_send(scene_group(scene.pk), {"type": CHANNEL_MESSAGE_TYPE, "event": event})
    text = (await communicator.receive_output(timeout=5))["text"]
    assert f'id="timeline-{scene.pk}"' in text
    # the project's other events (a job that is no segment of it) send nothing
    job = await database_sync_to_async(JobFactory)(project_id=project_id, status=JobStatus.RUNNING)
    other = {"type": "progress", "job": job.pk, "project": project_id, "value": 1, "max": 2}
    await get_channel_layer().group_send(project_group(project_id), {"type": CHANNEL_MESSAGE_TYPE, "event": other})
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()
