"""GET /api/v1/feedback/ and POST /api/v1/feedback/{id}/rating: who may read and rate what."""

from __future__ import annotations

import pytest

from projects.models import Episode, Scene
from quality.models import QualityFeedback, SceneRun, Segment
from tests.factories import make_project


def scene_segments(project, number: int = 1) -> tuple[Scene, list[Segment]]:
    episode, _ = Episode.objects.get_or_create(project=project, number=1, defaults={"title": "Pilot"})
    scene = Scene.objects.create(episode=episode, number=number)
    run = SceneRun.objects.create(scene=scene, segments_planned=2)
    return scene, [Segment.objects.create(run=run, scene=scene, number=n) for n in (1, 2)]


@pytest.fixture
def rows(project):
    scene, (first, second) = scene_segments(project)
    _, (third, _) = scene_segments(project, number=2)
    return {
        "scene": scene,
        "second": second,
        "a": QualityFeedback.objects.create(project=project, segment=first, attempt=1, passed=True, prompt="p"),
        "b": QualityFeedback.objects.create(project=project, segment=second, attempt=1, passed=False),
        "c": QualityFeedback.objects.create(project=project, segment=second, attempt=2, passed=True),
        "d": QualityFeedback.objects.create(project=project, segment=third, attempt=1, passed=True),
    }


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_lists_filter_by_project_scene_and_segment(api_viewer, project, rows):
    everything = ids(api_viewer.get("/api/v1/feedback/", {"project": project.pk}))
    assert everything == [rows[k].pk for k in "dcba"]  # newest first
    assert ids(api_viewer.get("/api/v1/feedback/", {"scene": rows["scene"].pk})) == [rows[k].pk for k in "cba"]
    assert ids(api_viewer.get("/api/v1/feedback/", {"segment": rows["second"].pk})) == [rows["c"].pk, rows["b"].pk]
    detail = api_viewer.get(f"/api/v1/feedback/{rows['a'].pk}/").json()
    assert detail["scene"] == rows["scene"].pk and detail["prompt"] == "p" and detail["rating"] is None
    assert api_viewer.get("/api/v1/feedback/", {"scene": "x"}).status_code == 400


def test_an_outsider_sees_nothing(api_outsider, outsider, project, rows):
    QualityFeedback.objects.create(project=make_project(outsider, name="Own"), attempt=1)
    listed = ids(api_outsider.get("/api/v1/feedback/", {"project": project.pk}))
    assert listed == []
    assert api_outsider.get(f"/api/v1/feedback/{rows['a'].pk}/").status_code == 404
    assert api_outsider.post(f"/api/v1/feedback/{rows['a'].pk}/rating", {"rating": 5}, format="json").status_code == 404
    rows["a"].refresh_from_db()
    assert rows["a"].rating is None


def test_a_member_rates_an_attempt_and_a_later_rating_replaces_it(api_member, member, rows):
    url = f"/api/v1/feedback/{rows['b'].pk}/rating"
    response = api_member.post(url, {"rating": 2}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["rating"] == 2 and response.json()["rated_by"] == member.pk
    assert api_member.post(url, {"rating": 4}, format="json").json()["rating"] == 4
    rows["b"].refresh_from_db()
    assert (rows["b"].rating, rows["b"].rated_by) == (4, member)


@pytest.mark.parametrize("body", [{"rating": 0}, {"rating": 6}, {"rating": "good"}, {"rating": 2.5}, {}])
def test_a_rating_outside_one_to_five_is_a_400_and_changes_nothing(api_owner, rows, body):
    response = api_owner.post(f"/api/v1/feedback/{rows['b'].pk}/rating", body, format="json")
    assert response.status_code == 400
    assert "rating" in response.json()
    rows["b"].refresh_from_db()
    assert rows["b"].rating is None


def test_a_viewer_reads_but_cannot_rate(api_viewer, rows):
    assert api_viewer.get(f"/api/v1/feedback/{rows['b'].pk}/").status_code == 200
    assert api_viewer.post(f"/api/v1/feedback/{rows['b'].pk}/rating", {"rating": 5}, format="json").status_code == 403
    rows["b"].refresh_from_db()
    assert rows["b"].rating is None


def test_anonymous_callers_are_refused(api_anonymous, rows):
    assert api_anonymous.get("/api/v1/feedback/").status_code in (401, 403)
    assert api_anonymous.post(f"/api/v1/feedback/{rows['b'].pk}/rating", {"rating": 5}, format="json").status_code in (
        401,
        403,
    )
