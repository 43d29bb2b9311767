"""Orchestration pages: start from the character page, the phase cards, advance and cancel, the list, live fragments."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from generation.models import Job
from quality.models import Orchestration
from quality.orchestration_views import orchestration_page_fragments
from tests.quality.orchestration_helpers import (
    WEIGHTLESS,
    character_with_reference,
    drive,
    flow_project,
    start,
    team_project,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("channel_layer")]


@pytest.fixture
def project(owner, member, viewer):
    return team_project(owner, member, viewer)


@pytest.fixture
def character(project):
    return character_with_reference(project)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_character_page_starts_one_and_its_page_shows_the_three_phases(fake, engine, project, character, member):
    client = client_for(member)
    page = client.get(f"/characters/{character.pk}/").content.decode()
    assert 'id="orchestrate"' in page and f'action="/characters/{character.pk}/orchestrate/"' in page

    response = client.post(
        f"/characters/{character.pk}/orchestrate/", {"prompt": "on a rooftop", "auto_advance": "on", **WEIGHTLESS}
    )

    orchestration = Orchestration.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/orchestrations/{orchestration.pk}/"
    assert (orchestration.created_by, orchestration.auto_advance, orchestration.prompt) == (
        member,
        True,
        "on a rooftop",
    )
    page = client.get(response["Location"]).content.decode()
    assert page.count("data-phase=") == 3
    assert "Character sheet" in page and "Animation loop" in page and "Video" in page
    assert f'ws-connect="/ws/pages/?orchestration={orchestration.pk}"' in page
    assert 'data-action="cancel"' in page


def test_a_refused_start_says_why_on_the_character_page(fake, engine, project, character, owner):
    client = client_for(owner)

    response = client.post(f"/characters/{character.pk}/orchestrate/", {**WEIGHTLESS, "loop": "weightless-video"})

    assert response.status_code == 302 and response["Location"] == f"/characters/{character.pk}/"
    page = client.get(response["Location"]).content.decode()
    assert "the loop phase needs a template of kind loop" in page
    assert not Orchestration.objects.exists()


def test_cards_fill_with_outputs_gates_and_the_approve_button(fake, engine, project, character, owner):
    orchestration = drive(start(project, character, owner, auto_advance=False), engine)
    client = client_for(owner)

    page = client.get(f"/orchestrations/{orchestration.pk}/").content.decode()

    assert 'data-phase-status="passed"' in page and 'data-phase-status="awaiting_approval"' in page
    assert 'data-verdict="not evaluated"' in page and "passed as not evaluated" in page
    sheet_job = Job.objects.get(phase_runs__orchestration=orchestration, phase=1)
    assert f'data-asset="{sheet_job.assets.get().pk}"' in page
    assert 'data-action="advance"' in page
    # The waiting loop's card says what it will start from: the sheet's first pose (no face scored).
    assert "its pose 1 (no face scored: the first pose), 256×512" in page

    response = client.post(f"/orchestrations/{orchestration.pk}/advance/")

    assert response.status_code == 302
    orchestration.refresh_from_db()
    assert orchestration.status == "running"
    assert client.post(f"/orchestrations/{orchestration.pk}/cancel/").status_code == 302
    orchestration.refresh_from_db()
    assert orchestration.status == "cancelled"


def test_the_project_lists_its_orchestrations(fake, engine, project, character, owner):
    orchestration = start(project, character, owner)
    client = client_for(owner)

    assert f"/orchestrations/?project={project.pk}" in client.get(f"/projects/{project.pk}/").content.decode()
    page = client.get("/orchestrations/", {"project": project.pk}).content.decode()
    assert f'data-orchestration="{orchestration.pk}"' in page and character.name in page
    other = flow_project(owner, name="Other")
    assert 'data-orchestration="' not in client.get("/orchestrations/", {"project": other.pk}).content.decode()


def test_outsiders_get_404_and_viewers_cannot_change_anything(
    fake, engine, project, character, owner, viewer, outsider
):
    orchestration = start(project, character, owner)
    outside, looking = client_for(outsider), client_for(viewer)

    for url in (f"/orchestrations/{orchestration.pk}/", f"/orchestrations/?project={project.pk}"):
        assert outside.get(url).status_code == 404
        assert looking.get(url).status_code == 200
    for url in (
        f"/orchestrations/{orchestration.pk}/cancel/",
        f"/orchestrations/{orchestration.pk}/advance/",
        f"/characters/{character.pk}/orchestrate/",
    ):
        assert outside.post(url).status_code == 404
        assert looking.post(url).status_code == 403
    assert 'data-action="cancel"' not in looking.get(f"/orchestrations/{orchestration.pk}/").content.decode()
    assert 'id="orchestrate"' in looking.get(f"/characters/{character.pk}/").content.decode()
    assert "Start orchestration" not in looking.get(f"/characters/{character.pk}/").content.decode()
    assert client_for(owner).get("/orchestrations/999999/").status_code == 404
    assert client_for(owner).post(f"/orchestrations/{orchestration.pk}/explode/").status_code == 404
    assert Orchestration.objects.get().status == "running"


def test_live_fragments_are_the_cards_for_its_events_only(fake, engine, project, character, owner, outsider):
    orchestration = start(project, character, owner)
    other = start(project, character_with_reference(project, name="Mei"), owner)
    [job] = Job.objects.filter(phase_runs__orchestration=orchestration)

    def fragments(event, user=owner):
        return orchestration_page_fragments(user=user, event=event, orchestration_id=orchestration.pk, csrf_token="t")

    mine = fragments({"type": "phase_passed", "orchestration": orchestration.pk})
    assert f'id="orchestration-phases-{orchestration.pk}" hx-swap-oob="true"' in mine
    assert fragments({"type": "job_complete", "job": job.pk}).startswith("<div")
    assert fragments({"type": "phase_passed", "orchestration": other.pk}) == ""
    assert fragments({"type": "progress", "job": job.pk}) == ""  # progress does not change a card
    assert fragments({"type": "phase_passed", "orchestration": orchestration.pk}, user=outsider) == ""


def test_the_page_socket_sends_the_cards_when_a_phase_moves(fake, engine, project, character, owner, outsider):
    from channels.layers import get_channel_layer

    from generation.events import CHANNEL_MESSAGE_TYPE, orchestration_group
    from tests.tower.test_page_consumer import _connect

    orchestration = start(project, character, owner)
    event = {"type": "orchestration_progress", "orchestration": orchestration.pk, "project": project.pk}

    async def scenario():
        communicator = await _connect(f"/ws/pages/?orchestration={orchestration.pk}", owner)
        await get_channel_layer().group_send(
            orchestration_group(orchestration.pk), {"type": CHANNEL_MESSAGE_TYPE, "event": event}
        )
        html = await communicator.receive_from(timeout=5)
        await communicator.disconnect()
        stranger = await _connect(f"/ws/pages/?orchestration={orchestration.pk}", outsider)
        closed = await stranger.receive_output(timeout=5)
        await stranger.disconnect()
        return html, closed

    html, closed = async_to_sync(scenario)()

    assert f'id="orchestration-phases-{orchestration.pk}" hx-swap-oob="true"' in html
    assert 'data-phase="1"' in html
    assert closed == {"type": "websocket.close", "code": 4404}


def test_the_project_page_sets_whether_unevaluated_gates_may_pass(project, owner, viewer):
    client = client_for(owner)
    assert 'name="advance_unevaluated"' in client.get(f"/projects/{project.pk}/").content.decode()

    response = client.post(f"/projects/{project.pk}/", {"name": project.name, "art_kind": project.art_kind})

    assert response.status_code == 302
    project.refresh_from_db()
    assert project.advance_unevaluated is False  # an unticked box
    client.post(
        f"/projects/{project.pk}/", {"name": project.name, "art_kind": project.art_kind, "advance_unevaluated": "on"}
    )
    project.refresh_from_db()
    assert project.advance_unevaluated is True
    assert client_for(viewer).post(f"/projects/{project.pk}/", {"name": "x", "art_kind": "anime"}).status_code == 403
