"""The episode page (storyboard): scenes in order with thumbnail, duration, status and join verdicts;
add, edit, reorder, delete; the film and Assemble; who may see and change what."""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.test import Client

from generation.models import Assembly, AssemblyStatus, InputImage
from projects.models import Scene, SceneStatus
from projects.scenes import scene_add, scene_move, scene_remove, scenes_reorder
from projects.services import ProjectError, episode_create
from quality.models import JoinEvaluation, SceneRun, Segment, SegmentStatus
from tests.factories import AssetFactory, CharacterFactory, png_bytes

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def kai(project):
    return CharacterFactory(project=project, name="Kai")


@pytest.fixture
def episode(project):
    return episode_create(project=project, title="The floating school")


def add(episode, title, kai, seconds=4.0):
    return scene_add(episode=episode, title=title, duration_seconds=seconds, characters=[kai])


def order(episode) -> list[str]:
    return list(Scene.objects.filter(episode=episode).order_by("number").values_list("title", flat=True))


def numbers(episode) -> list[int]:
    return list(Scene.objects.filter(episode=episode).order_by("number").values_list("number", flat=True))


def card_titles(html: str) -> list[str]:
    return re.findall(r'<h3><a href="/scenes/\d+/">\d+\. ([^<]+)</a>', html)


# --- services ----------------------------------------------------------------------------------


def test_moving_a_scene_renumbers_the_episode_without_gaps(episode, kai):
    for title in ("Dawn", "Bell", "Chase", "Dusk"):
        add(episode, title, kai)
    dusk = Scene.objects.get(title="Dusk")

    scene_move(scene=dusk, position=1)
    assert order(episode) == ["Dusk", "Dawn", "Bell", "Chase"] and numbers(episode) == [1, 2, 3, 4]

    scene_move(scene=Scene.objects.get(title="Dawn"), position=99)  # past the end: the last place
    assert order(episode) == ["Dusk", "Bell", "Chase", "Dawn"]

    scene_remove(scene=Scene.objects.get(title="Bell"))
    assert order(episode) == ["Dusk", "Chase", "Dawn"] and numbers(episode) == [1, 2, 3]

    scene = scene_add(episode=episode, title="Rooftop", duration_seconds=2, characters=[kai], position=2)
    assert scene.number == 2 and order(episode) == ["Dusk", "Rooftop", "Chase", "Dawn"]


def test_a_reorder_must_name_every_scene_once(episode, kai):
    a, b = add(episode, "A", kai), add(episode, "B", kai)
    for bad in ([a.pk], [a.pk, a.pk], [a.pk, b.pk, 999_999]):
        with pytest.raises(ProjectError):
            scenes_reorder(episode=episode, order=bad)
        assert order(episode) == ["A", "B"]
    scenes_reorder(episode=episode, order=[b.pk, a.pk])
    assert order(episode) == ["B", "A"]


def test_a_character_of_another_project_is_refused(episode, owner, kai):
    from django.core.exceptions import ValidationError

    from tests.factories import make_project

    stranger = CharacterFactory(project=make_project(owner, name="Elsewhere"), name="Mei")
    with pytest.raises(ValidationError):
        scene_add(episode=episode, title="X", duration_seconds=3, characters=[stranger])
    assert not Scene.objects.exists()


# --- the storyboard page -----------------------------------------------------------------------


def segment_of(scene, number, *, status=SegmentStatus.COMPLETE, join_passed=None, output=None, run=None):
    run = run or SceneRun.objects.create(scene=scene, segments_planned=2, status=SegmentStatus.COMPLETE)
    return Segment.objects.create(
        run=run, scene=scene, number=number, status=status, join_passed=join_passed, output=output
    )


def test_the_storyboard_shows_scenes_in_order_with_thumbnail_duration_status_and_joins(project, episode, kai, member):
    dawn = add(episode, "Dawn", kai, seconds=6)
    chase = add(episode, "Chase", kai, seconds=2.5)
    scene_move(scene=chase, position=1)
    output = AssetFactory(project=project, kind="video", mime="video/mp4")
    run = SceneRun.objects.create(scene=dawn, segments_planned=2, status=SegmentStatus.COMPLETE)
    segment_of(dawn, 1, output=output, run=run)
    segment_of(dawn, 2, join_passed=False, run=run)
    JoinEvaluation.objects.create(project=project, scene=dawn, kind="scene", passed=True, ssim=0.9)
    Scene.objects.filter(pk=dawn.pk).update(status=SceneStatus.COMPLETE)

    html = client_for(member).get(f"/episodes/{episode.pk}/").content.decode()

    assert card_titles(html) == ["Chase", "Dawn"]
    dawn_card = html[html.index(f'data-scene-card="{dawn.pk}"') :]
    assert f'src="/assets/{output.pk}/thumb/"' in dawn_card
    assert "6.0 s" in dawn_card and 'data-scene-status="complete"' in dawn_card
    assert 'data-join="2" data-verdict="failed"' in dawn_card
    assert 'data-join="scene" data-verdict="passed"' in dawn_card
    assert "no frames yet" in html[html.index(f'data-scene-card="{chase.pk}"') : html.index(dawn_card[:40])]
    assert f'ws-connect="/ws/pages/?episode={episode.pk}"' in html
    assert html.count("data-move=") == 4 and f'action="/episodes/{episode.pk}/scenes/"' in html


def test_a_scene_without_a_complete_segment_output_shows_its_last_frame(project, episode, kai, owner):
    dawn = add(episode, "Dawn", kai)
    frame = InputImage.objects.create(project=project, sha256="a" * 64, file=ContentFile(png_bytes(), name="last.png"))
    segment = segment_of(dawn, 1)
    segment.last_frame = frame
    segment.save()

    html = client_for(owner).get(f"/episodes/{episode.pk}/").content.decode()

    assert f'src="{frame.file.url}"' in html


def test_add_edit_move_and_delete_through_the_page(episode, kai, member):
    client = client_for(member)
    url = f"/episodes/{episode.pk}/scenes/"
    for title in ("Dawn", "Chase"):
        response = client.post(url, {"add-title": title, "add-duration_seconds": "3", "add-characters": [kai.pk]})
        assert response.status_code == 302
    dawn, chase = Scene.objects.order_by("number")
    assert list(dawn.characters.all()) == [kai]

    assert client.post(f"/scenes/{chase.pk}/move/", {"direction": "up"}).status_code == 302
    assert order(episode) == ["Chase", "Dawn"]

    edit = client.get(f"/scenes/{dawn.pk}/edit/").content.decode()
    assert 'value="Dawn"' in edit
    response = client.post(
        f"/scenes/{dawn.pk}/edit/",
        {"title": "Daybreak", "duration_seconds": "7.5", "characters": [kai.pk], "mood": "hopeful"},
    )
    assert response.status_code == 302
    dawn.refresh_from_db()
    assert (dawn.title, dawn.duration_seconds, dawn.mood, dawn.number) == ("Daybreak", 7.5, "hopeful", 2)

    confirm = client.get(f"/scenes/{chase.pk}/delete/").content.decode()
    assert "Delete scene 1" in confirm and "data-confirm-delete" in confirm
    assert client.post(f"/scenes/{chase.pk}/delete/", {}).status_code == 400  # not confirmed: kept
    assert Scene.objects.filter(pk=chase.pk).exists()
    assert client.post(f"/scenes/{chase.pk}/delete/", {"confirm": "yes"}).status_code == 302
    assert order(episode) == ["Daybreak"] and numbers(episode) == [1]


def test_drag_and_drop_posts_the_new_order_and_gets_the_storyboard(episode, kai, owner):
    a, b, c = add(episode, "A", kai), add(episode, "B", kai), add(episode, "C", kai)
    client = client_for(owner)

    response = client.post(f"/episodes/{episode.pk}/reorder/", {"order": [c.pk, a.pk, b.pk]}, HTTP_HX_REQUEST="true")

    assert response.status_code == 200 and order(episode) == ["C", "A", "B"]
    assert card_titles(response.content.decode()) == ["C", "A", "B"]
    assert "<html" not in response.content.decode()  # the fragment alone
    # a storyboard read before the move carries an older revision than the move's answer (the page keeps the newer)
    page = client.get(f"/episodes/{episode.pk}/").content.decode()
    assert "data-storyboard-slot" in page
    read_before = revision(client.get(f"/episodes/{episode.pk}/", HTTP_HX_REQUEST="true").content.decode())
    moved = client.post(f"/episodes/{episode.pk}/reorder/", {"order": [a.pk, b.pk, c.pk]}, HTTP_HX_REQUEST="true")
    assert read_before < revision(moved.content.decode()) and card_titles(moved.content.decode()) == ["A", "B", "C"]
    response = client.post(f"/episodes/{episode.pk}/reorder/", {"order": [c.pk, a.pk]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 400 and order(episode) == ["A", "B", "C"]
    assert "every scene of the episode exactly once" in response.content.decode()


def revision(html: str) -> int:
    found = re.search(r'id="storyboard-\d+"[^>]*? data-revision="(\d+)"', html)
    assert found, html[:300]
    return int(found[1])


@pytest.mark.parametrize(
    "data, message",
    [
        ({"add-title": "X", "add-duration_seconds": "0", "add-characters": ["KAI"]}, "greater than or equal to 0.1"),
        ({"add-title": "X", "add-duration_seconds": "601", "add-characters": ["KAI"]}, "less than or equal to 600"),
        ({"add-title": "X", "add-duration_seconds": "abc", "add-characters": ["KAI"]}, "Enter a number"),
        ({"add-title": "X", "add-duration_seconds": "3"}, "Choose at least one character"),
        ({"add-title": "", "add-duration_seconds": "3", "add-characters": ["KAI"]}, "This field is required"),
        ({"add-title": "X", "add-duration_seconds": "3", "add-characters": ["999999"]}, "Select a valid choice"),
    ],
)
def test_bad_scene_input_says_why_and_adds_nothing(episode, kai, owner, data, message):
    data = {k: [str(kai.pk) if x == "KAI" else x for x in v] if isinstance(v, list) else v for k, v in data.items()}

    response = client_for(owner).post(f"/episodes/{episode.pk}/scenes/", data)

    assert response.status_code == 400
    assert message in response.content.decode() and "The scene was not added." in response.content.decode()
    assert not Scene.objects.exists()


def test_bad_moves_and_edits_change_nothing(episode, kai, owner):
    a, _ = add(episode, "A", kai), add(episode, "B", kai)
    client = client_for(owner)
    assert client.post(f"/scenes/{a.pk}/move/", {"direction": "sideways"}).status_code == 400
    assert client.post(f"/scenes/{a.pk}/move/", {"position": "-3"}).status_code == 400
    response = client.post(f"/scenes/{a.pk}/edit/", {"title": "A2", "duration_seconds": "-1", "characters": [kai.pk]})
    assert response.status_code == 400 and "greater than or equal to 0.1" in response.content.decode()
    assert order(episode) == ["A", "B"]


def test_the_viewer_reads_without_write_buttons_and_their_posts_are_refused(episode, kai, viewer):
    a, b = add(episode, "A", kai), add(episode, "B", kai)
    client = client_for(viewer)

    html = client.get(f"/episodes/{episode.pk}/").content.decode()
    assert card_titles(html) == ["A", "B"]
    for marker in ("data-move=", "data-edit", "data-delete", "data-scene-add", 'data-action="assemble"', "draggable"):
        assert marker not in html
    assert "Save scene" not in client.get(f"/scenes/{a.pk}/edit/").content.decode()

    posts = [
        (f"/episodes/{episode.pk}/scenes/", {"add-title": "X", "add-duration_seconds": "3", "add-characters": kai.pk}),
        (f"/episodes/{episode.pk}/reorder/", {"order": [b.pk, a.pk]}),
        (f"/episodes/{episode.pk}/assemble/", {}),
        (f"/scenes/{a.pk}/move/", {"direction": "down"}),
        (f"/scenes/{a.pk}/edit/", {"title": "Z", "duration_seconds": "3", "characters": kai.pk}),
        (f"/scenes/{a.pk}/delete/", {"confirm": "yes"}),
        (f"/projects/{episode.project_id}/episodes/new/", {"title": "E2"}),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 403, url
    assert order(episode) == ["A", "B"] and episode.project.episodes.count() == 1


def test_an_outsider_gets_404_everywhere(episode, kai, outsider):
    a = add(episode, "A", kai)
    client = client_for(outsider)
    for url in (f"/episodes/{episode.pk}/", f"/scenes/{a.pk}/edit/", f"/scenes/{a.pk}/delete/"):
        assert client.get(url).status_code == 404, url
    for url in (f"/episodes/{episode.pk}/scenes/", f"/scenes/{a.pk}/move/", f"/scenes/{a.pk}/delete/"):
        assert client.post(url, {"direction": "down", "confirm": "yes"}).status_code == 404, url
    assert Scene.objects.filter(pk=a.pk, number=1).exists()
    assert Client().get(f"/episodes/{episode.pk}/").status_code == 302  # anonymous: to the login page


def test_the_project_page_links_its_episodes_and_makes_new_ones(project, episode, owner, viewer):
    client = client_for(owner)
    html = client.get(f"/projects/{project.pk}/").content.decode()
    assert f'href="/episodes/{episode.pk}/"' in html and "The floating school" in html

    response = client.post(f"/projects/{project.pk}/episodes/new/", {"title": "Sky pirates"})
    second = project.episodes.get(title="Sky pirates")
    assert response["Location"] == f"/episodes/{second.pk}/" and second.number == 2
    assert client.post(f"/projects/{project.pk}/episodes/new/", {"title": ""}).status_code == 303
    assert project.episodes.count() == 2
    assert "New episode" not in client_for(viewer).get(f"/projects/{project.pk}/").content.decode()


# --- the film ----------------------------------------------------------------------------------


def test_the_film_plays_the_newest_assembled_episode_with_its_chapters(project, episode, kai, owner):
    add(episode, "A", kai)
    old = AssetFactory(project=project, kind="video", mime="video/mp4")
    new = AssetFactory(project=project, kind="video", mime="video/mp4", frames=48, fps=24, duration_seconds=2.0)
    from django.utils import timezone

    for asset, minutes in ((old, 10), (new, 1)):
        Assembly.objects.create(
            project=project,
            episode=episode,
            status=AssemblyStatus.SUCCEEDED,
            asset=asset,
            finished_at=timezone.now() - timezone.timedelta(minutes=minutes),
            chapters=[{"title": "Scene 1", "start": 0.0, "end": 2.0}],
        )
    Assembly.objects.create(project=project, episode=episode, status=AssemblyStatus.RUNNING, progress=0.4)

    html = client_for(owner).get(f"/episodes/{episode.pk}/").content.decode()

    assert f'data-film-video="{new.pk}"' in html and f'src="{new.file.url}"' in html
    assert f'data-film-video="{old.pk}"' not in html
    assert 'data-assembly-status="running"' in html and "width: 40%" in html
    assert "Scene 1" in html and "48 frames" in html


@pytest.mark.parametrize(
    "data, message",
    [
        ({"container": "avi", "crossfade_frames": "0"}, "Select a valid choice"),
        ({"container": "mp4", "crossfade_frames": "-1"}, "greater than or equal to 0"),
        ({"container": "mp4", "crossfade_frames": "two"}, "Enter a whole number"),
    ],
)
def test_bad_assemble_input_says_why_and_queues_nothing(episode, kai, owner, data, message):
    add(episode, "A", kai)

    response = client_for(owner).post(f"/episodes/{episode.pk}/assemble/", data)

    assert response.status_code == 400 and message in response.content.decode()
    assert not Assembly.objects.exists()


def test_a_reconnecting_page_rereads_the_film(project, episode, kai, viewer):
    add(episode, "A", kai)
    client = client_for(viewer)
    page = client.get(f"/episodes/{episode.pk}/").content.decode()
    assert f'hx-get="/episodes/{episode.pk}/?part=film" hx-trigger="tower:resync from:body"' in page
    asset = AssetFactory(project=project, kind="video", mime="video/mp4")
    Assembly.objects.create(project=project, episode=episode, status=AssemblyStatus.SUCCEEDED, asset=asset)

    film = client.get(f"/episodes/{episode.pk}/?part=film", HTTP_HX_REQUEST="true").content.decode()

    assert film.startswith(f'<section class="card" id="film-{episode.pk}"') and f'data-film-video="{asset.pk}"' in film
    assert "data-storyboard" not in film and 'data-action="assemble"' not in film  # a viewer: no button


def test_assembling_an_episode_without_scenes_or_footage_says_why(episode, kai, owner):
    client = client_for(owner)
    data = {"container": "mp4", "crossfade_frames": "0"}

    empty = client.post(f"/episodes/{episode.pk}/assemble/", data)
    assert empty.status_code == 400 and "the episode has no scenes" in empty.content.decode()
    add(episode, "Not generated yet", kai)
    ungenerated = client.post(f"/episodes/{episode.pk}/assemble/", data)
    assert ungenerated.status_code == 400 and "generate the scenes first" in ungenerated.content.decode()
    assert not Assembly.objects.exists()


def test_the_storyboard_reads_a_fixed_number_of_queries_however_many_scenes(project, episode, kai, owner):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = client_for(owner)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(f"/episodes/{episode.pk}/").status_code == 200
        return len(captured)

    def scene_with_segments(title: str) -> None:
        scene = add(episode, title, kai)
        run = SceneRun.objects.create(scene=scene, segments_planned=2, status=SegmentStatus.COMPLETE)
        segment_of(scene, 1, output=AssetFactory(project=project, kind="video", mime="video/mp4"), run=run)
        segment_of(scene, 2, join_passed=True, run=run)

    scene_with_segments("A")
    few = queries()
    for title in ("B", "C", "D", "E"):
        scene_with_segments(title)
    assert queries() == few
