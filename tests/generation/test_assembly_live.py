"""The episode page's film bar follows an assembly live: the worker's ``assembly_progress`` reaches the
page socket as the bar alone (read from the database), never the storyboard or a film that plays."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from generation import assembly_task as service
from generation.models import Assembly, AssemblyStatus
from projects.models import Episode, Project
from quality.movie_live import movie_page_fragments
from tests.factories import AssetFactory
from tests.support.personas import OUTSIDER, persona


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def episode(project: Project) -> Episode:
    return Episode.objects.create(project=project, number=1, title="Pilot")


def progress_event(assembly: Assembly, value: float) -> dict:
    return {
        "type": "assembly_progress",
        "project": assembly.project_id,
        "episode": assembly.episode_id,
        "scene": None,
        "assembly": assembly.pk,
        "progress": value,
        "status": "running",
    }


@pytest.mark.django_db
def test_the_progress_event_renders_the_bar_alone_from_the_database(project, episode, owner, viewer):
    old = AssetFactory(project=project, kind="video", mime="video/mp4")
    Assembly.objects.create(project=project, episode=episode, status=AssemblyStatus.SUCCEEDED, asset=old)
    page = client_for(viewer).get(f"/episodes/{episode.pk}/").content.decode()
    # The page has the bar's place before any assembly runs, so the first event has somewhere to land.
    assert f'<div id="assembly-{episode.pk}" data-assembly>' in page and "data-assembly-status" not in page

    running = Assembly.objects.create(project=project, episode=episode, status=AssemblyStatus.RUNNING, progress=0.4)

    def fragments(event, user=viewer, page="episode", page_id=episode.pk):
        return movie_page_fragments(user=user, event=event, page=page, page_id=page_id, csrf_token="t")

    html = fragments(progress_event(running, 0.9))  # the row says 40%: the page shows the row
    assert html.startswith(f'<div id="assembly-{episode.pk}" hx-swap-oob="true" data-assembly>')
    assert f"Assembly #{running.pk} running · 40%" in html and "width: 40%" in html
    assert 'aria-valuenow="40"' in html
    for absent in ("data-storyboard", "<video", 'id="film-'):  # a playing film is not restarted
        assert absent not in html, absent

    other = Episode.objects.create(project=project, number=2, title="Next")
    assert fragments(progress_event(running, 0.5), page_id=other.pk) == ""
    assert fragments(progress_event(running, 0.5), page="scene", page_id=1) == ""
    assert fragments(progress_event(running, 0.5), user=persona(OUTSIDER)) == ""

    Assembly.objects.filter(pk=running.pk).update(status=AssemblyStatus.FAILED, error_message="disk full")
    assert f"Assembly #{running.pk} failed: disk full" in fragments(progress_event(running, 0.5))


SAME_ORIGIN = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
@pytest.mark.usefixtures("channel_layer")
async def test_the_workers_progress_moves_the_bar_on_the_episode_socket(project, episode, owner, monkeypatch):
    from tower.asgi import application

    assembly = await database_sync_to_async(Assembly.objects.create)(
        project=project, episode=episode, created_by=owner, status=AssemblyStatus.RUNNING
    )
    client = await database_sync_to_async(client_for)(owner)
    cookie = "; ".join(f"{k}={v.value}" for k, v in client.cookies.items()).encode()
    communicator = WebsocketCommunicator(
        application, f"/ws/pages/?episode={episode.pk}", headers=[*SAME_ORIGIN, (b"cookie", cookie)]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected

    monkeypatch.setattr(service, "PROGRESS_EVENT_INTERVAL", 0.0)
    writer = service._ProgressWriter(assembly)
    for fraction in (0.25, 0.62):
        writer.last = 0.0  # the row's write interval has passed
        await database_sync_to_async(writer)(fraction)
        text = (await communicator.receive_output(timeout=5))["text"]
        percent = round(fraction * 100)
        assert f'id="assembly-{episode.pk}" hx-swap-oob="true"' in text and f"width: {percent}%" in text
        assert "data-storyboard" not in text
    await communicator.disconnect()
