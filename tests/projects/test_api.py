"""REST API v1: projects, style, members, episodes and scenes."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from characters.services import CharacterError
from generation.services.jobs import JobError
from projects.models import Episode, GenerationStyle, Membership, Project, Scene
from projects.services import ProjectError, episode_create, scene_create
from tests.factories import UserFactory, make_project
from tower.core.api import exception_handler

PERSONAS = ["owner", "member", "viewer", "outsider", "anonymous"]

# status for owner, member (editor), viewer, outsider, anonymous
READ = (200, 200, 200, 404, 401)
LIST = (200, 200, 200, 200, 401)  # the outsider's list is empty (asserted below)
WRITE = (200, 200, 403, 404, 401)
CREATE_IN_PROJECT = (201, 201, 403, 404, 401)
DELETE_IN_PROJECT = (204, 204, 403, 404, 401)
OWNER_ONLY_CREATE = (201, 403, 403, 404, 401)
OWNER_ONLY_DELETE = (204, 403, 403, 404, 401)

MATRIX = [
    ("get", "/api/v1/projects/", None, LIST),
    ("post", "/api/v1/projects/", {"name": "Mine"}, (201, 201, 201, 201, 401)),
    ("get", "/api/v1/projects/{project}/", None, READ),
    ("put", "/api/v1/projects/{project}/", {"name": "Renamed"}, WRITE),
    ("patch", "/api/v1/projects/{project}/", {"description": "new"}, WRITE),
    ("delete", "/api/v1/projects/{project}/", None, OWNER_ONLY_DELETE),
    ("get", "/api/v1/projects/{project}/style/", None, READ),
    ("put", "/api/v1/projects/{project}/style/", {"checkpoint": "anything.safetensors"}, WRITE),
    ("patch", "/api/v1/projects/{project}/style/", {"draft_steps": 12}, WRITE),
    ("get", "/api/v1/projects/{project}/members/", None, READ),
    ("post", "/api/v1/projects/{project}/members/", {"username": "newbie"}, OWNER_ONLY_CREATE),
    ("delete", "/api/v1/projects/{project}/members/{viewer_id}/", None, OWNER_ONLY_DELETE),
    ("get", "/api/v1/episodes/", None, LIST),
    ("post", "/api/v1/episodes/", {"project": "{project}", "title": "Two"}, CREATE_IN_PROJECT),
    ("get", "/api/v1/episodes/{episode}/", None, READ),
    ("put", "/api/v1/episodes/{episode}/", {"project": "{project}", "title": "Pilot!"}, WRITE),
    ("patch", "/api/v1/episodes/{episode}/", {"synopsis": "x"}, WRITE),
    ("delete", "/api/v1/episodes/{episode}/", None, DELETE_IN_PROJECT),
    ("get", "/api/v1/scenes/", None, LIST),
    ("post", "/api/v1/scenes/", {"episode": "{episode}", "title": "Rooftop"}, CREATE_IN_PROJECT),
    ("get", "/api/v1/scenes/{scene}/", None, READ),
    ("put", "/api/v1/scenes/{scene}/", {"episode": "{episode}", "mood": "calm"}, WRITE),
    ("patch", "/api/v1/scenes/{scene}/", {"mood": "tense"}, WRITE),
    ("delete", "/api/v1/scenes/{scene}/", None, DELETE_IN_PROJECT),
]


@pytest.fixture
def world(project, viewer):
    UserFactory(username="newbie")
    episode = episode_create(project=project, title="Pilot")
    scene = scene_create(episode=episode, title="Gate")
    return {"project": project.pk, "episode": episode.pk, "scene": scene.pk, "viewer_id": viewer.pk}


def _fill(value, ids):
    if isinstance(value, str):
        return int(value.format(**ids)) if value.startswith("{") else value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize(("method", "url", "body", "expected"), MATRIX, ids=[f"{m} {u}" for m, u, *_ in MATRIX])
@pytest.mark.parametrize("persona", PERSONAS)
def test_access_matrix(request, world, persona, method, url, body, expected):
    client = request.getfixturevalue(f"api_{persona}")
    response = getattr(client, method)(_fill(url, world), _fill(body, world), format="json")
    want = expected[PERSONAS.index(persona)]
    assert response.status_code == want, response.content
    if want == 401:
        assert response["WWW-Authenticate"] == "Bearer"
    if persona == "outsider" and method == "get" and want == 200:
        assert response.json()["results"] == [], "an outsider's list must not leak rows"


def test_nothing_changes_when_the_viewer_or_outsider_tries(world, api_viewer, api_outsider):
    for client in (api_viewer, api_outsider):
        client.patch(f"/api/v1/projects/{world['project']}/", {"name": "Hacked"})
        client.delete(f"/api/v1/projects/{world['project']}/")
        client.post(f"/api/v1/projects/{world['project']}/members/", {"username": "newbie"})
        client.delete(f"/api/v1/episodes/{world['episode']}/")
    assert Project.objects.get().name == "Skyline Academy"
    assert Membership.objects.count() == 2
    assert Episode.objects.count() == 1


def test_token_auth_works_like_a_session(world, api_anonymous, owner, token_for):
    api_anonymous.credentials(HTTP_AUTHORIZATION=f"Bearer {token_for(owner)}")
    response = api_anonymous.get("/api/v1/projects/")
    assert response.status_code == 200
    assert [p["id"] for p in response.json()["results"]] == [world["project"]]


# --- projects -------------------------------------------------------------------------------


def test_create_project_gives_owner_role_slug_and_default_style(api_owner, owner):
    bible = {"premise": "A school in the sky", "episode_outline": ["arrival", "storm"]}
    response = api_owner.post("/api/v1/projects/", {"name": "Cloud Nine", "story_bible": bible}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "cloud-nine"
    assert body["owner"] == owner.pk
    assert body["owner_username"] == "owner"
    assert body["role"] == "owner"
    assert body["story_bible"] == bible
    assert body["phase"] == 1
    project = Project.objects.get(pk=body["id"])
    assert project.owner == owner
    assert GenerationStyle.objects.filter(project=project).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X", "story_bible": {"premise": 3}}, "story_bible"),
        ({"name": "X", "story_bible": ["not", "an", "object"]}, "story_bible"),
        ({"name": "X", "threshold_similarity": 1.5}, "threshold_similarity"),
        ({"name": "X", "art_kind": "watercolour"}, "art_kind"),
        ({"name": ""}, "name"),
        ({}, "name"),
    ],
)
def test_invalid_project_is_refused_with_field_errors_and_nothing_written(api_owner, body, field):
    response = api_owner.post("/api/v1/projects/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Project.objects.count() == 0
    assert GenerationStyle.objects.count() == 0


def test_story_bible_message_names_the_bad_key(api_owner):
    response = api_owner.post("/api/v1/projects/", {"name": "X", "story_bible": {"premise": 3}}, format="json")
    assert response.json() == {"story_bible": ["premise must be a string"]}


def test_duplicate_slug_is_a_field_error(api_owner, owner):
    make_project(owner, "Taken", slug="taken")
    response = api_owner.post("/api/v1/projects/", {"name": "Other", "slug": "taken"})
    assert response.status_code == 400
    assert "slug" in response.json()
    assert Project.objects.count() == 1


def test_member_sees_role_and_list_shows_roles(world, api_member, api_viewer):
    assert api_member.get("/api/v1/projects/").json()["results"][0]["role"] == "editor"
    assert api_viewer.get(f"/api/v1/projects/{world['project']}/").json()["role"] == "viewer"


def test_update_project_and_put_requires_name(world, api_member):
    url = f"/api/v1/projects/{world['project']}/"
    response = api_member.patch(url, {"story_bible": {"tone": "hopeful"}}, format="json")
    assert response.status_code == 200
    assert Project.objects.get().story_bible == {"tone": "hopeful"}
    response = api_member.put(url, {"description": "no name"})
    assert response.status_code == 400
    assert "name" in response.json()


def test_owner_deletes_project_with_everything_in_it(world, api_owner):
    assert api_owner.delete(f"/api/v1/projects/{world['project']}/").status_code == 204
    assert not Project.objects.exists()
    assert not Episode.objects.exists()
    assert not Scene.objects.exists()


@pytest.mark.parametrize("bad", ["abc", "0", "99999", "99999999999999999999999"])
def test_unknown_or_non_numeric_ids_are_404(world, api_owner, bad):
    assert api_owner.get(f"/api/v1/projects/{bad}/").status_code == 404
    assert api_owner.get(f"/api/v1/episodes/{bad}/").status_code == 404
    assert api_owner.get(f"/api/v1/scenes/{bad}/").status_code == 404
    assert api_owner.delete(f"/api/v1/projects/{world['project']}/members/{bad}/").status_code == 404


def test_urls_work_without_the_trailing_slash(world, api_owner):
    assert api_owner.get("/api/v1/projects").status_code == 200
    assert api_owner.get(f"/api/v1/projects/{world['project']}/style").status_code == 200


def test_project_list_runs_a_constant_number_of_queries(api_owner, owner, django_assert_max_num_queries):
    others = [UserFactory() for _ in range(3)]
    for i in range(3):
        make_project(owner, f"Own {i}")
        make_project(others[i], f"Shared {i}").memberships.create(user=owner, role="viewer")
    with django_assert_max_num_queries(3):
        small = api_owner.get("/api/v1/projects/")
    for i in range(12):
        make_project(owner, f"More {i}")
        make_project(others[i % 3], f"More shared {i}").memberships.create(user=owner, role="editor")
    with django_assert_max_num_queries(3):
        large = api_owner.get("/api/v1/projects/")
    assert small.json()["count"] == 6
    assert large.json()["count"] == 30
    assert {p["role"] for p in large.json()["results"]} == {"owner", "viewer", "editor"}


def test_pagination_search_filter_and_ordering(api_owner, owner):
    for name in ["Alpha", "Beta", "Gamma"]:
        make_project(owner, name)
    make_project(owner, "Delta", art_kind="photoreal")
    page = api_owner.get("/api/v1/projects/?page_size=2").json()
    assert page["count"] == 4
    assert [p["name"] for p in page["results"]] == ["Alpha", "Beta"]
    assert page["next"] is not None
    second = api_owner.get(page["next"]).json()
    assert [p["name"] for p in second["results"]] == ["Delta", "Gamma"]
    assert [p["name"] for p in api_owner.get("/api/v1/projects/?search=amm").json()["results"]] == ["Gamma"]
    assert [p["name"] for p in api_owner.get("/api/v1/projects/?art_kind=photoreal").json()["results"]] == ["Delta"]
    names = [p["name"] for p in api_owner.get("/api/v1/projects/?ordering=-name").json()["results"]]
    assert names == ["Gamma", "Delta", "Beta", "Alpha"]


# --- style ----------------------------------------------------------------------------------


def test_style_shows_presets_and_patch_updates_them(world, api_member):
    url = f"/api/v1/projects/{world['project']}/style/"
    style = api_member.get(url).json()
    assert style["presets"] == {
        "draft": {"steps": 15, "cfg": 7.0, "denoise": 0.8},
        "production": {"steps": 25, "cfg": 8.0, "denoise": 1.0},
    }
    loras = [{"name": "ink.safetensors", "strength": 0.6}]
    response = api_member.patch(url, {"draft_steps": 10, "loras": loras}, format="json")
    assert response.status_code == 200
    assert response.json()["presets"]["draft"]["steps"] == 10
    assert response.json()["loras"] == loras
    assert GenerationStyle.objects.get().draft_steps == 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"width": 770}, "width"),  # not a multiple of 8: refused by the service
        ({"width": 32}, "width"),
        ({"draft_cfg": 31}, "draft_cfg"),
        ({"loras": [{"strength": 1}]}, "loras"),
        ({"loras": [{"name": "x", "strength": 9}]}, "loras"),
        ({"loras": "x.safetensors"}, "loras"),
    ],
)
def test_invalid_style_is_refused_and_unchanged(world, api_owner, body, field):
    response = api_owner.patch(f"/api/v1/projects/{world['project']}/style/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    style = GenerationStyle.objects.get()
    assert (style.width, style.draft_cfg, style.loras) == (768, 7.0, [])


# --- members --------------------------------------------------------------------------------


def test_owner_adds_changes_and_removes_members(world, api_owner):
    url = f"/api/v1/projects/{world['project']}/members/"
    response = api_owner.post(url, {"username": "newbie", "role": "viewer"})
    assert response.status_code == 201
    newbie_id = response.json()["user_id"]
    assert response.json() == {
        "user_id": newbie_id,
        "username": "newbie",
        "role": "viewer",
        "created_at": response.json()["created_at"],
    }
    api_owner.post(url, {"username": "newbie", "role": "editor"})
    members = api_owner.get(url).json()["results"]
    assert [(m["username"], m["role"]) for m in members] == [
        ("member", "editor"),
        ("newbie", "editor"),
        ("viewer", "viewer"),
    ]
    assert api_owner.delete(f"{url}{newbie_id}/").status_code == 204
    assert api_owner.delete(f"{url}{newbie_id}/").status_code == 404
    assert not Membership.objects.filter(user_id=newbie_id).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "nobody"}, "username"),
        ({"username": "owner"}, "username"),
        ({"username": "newbie", "role": "admin"}, "role"),
    ],
)
def test_invalid_member_is_refused(world, api_owner, body, field):
    response = api_owner.post(f"/api/v1/projects/{world['project']}/members/", body)
    assert response.status_code == 400
    assert field in response.json()
    assert Membership.objects.count() == 2


# --- episodes and scenes --------------------------------------------------------------------


def test_episodes_number_themselves_and_refuse_duplicates(world, api_member):
    response = api_member.post("/api/v1/episodes/", {"project": world["project"], "title": "Storm"})
    assert response.status_code == 201
    assert response.json()["number"] == 2
    assert response.json()["project"] == world["project"]
    duplicate = api_member.post("/api/v1/episodes/", {"project": world["project"], "title": "Again", "number": 2})
    assert duplicate.status_code == 400
    assert "non_field_errors" in duplicate.json()
    zero = api_member.post("/api/v1/episodes/", {"project": world["project"], "title": "Zero", "number": 0})
    assert zero.status_code == 400
    assert "number" in zero.json()
    assert Episode.objects.count() == 2


def test_episode_cannot_be_created_in_an_invisible_project_or_moved(world, api_outsider, api_owner, outsider):
    elsewhere = make_project(outsider, "Elsewhere")
    response = api_owner.post("/api/v1/episodes/", {"project": elsewhere.pk, "title": "Sneaky"})
    assert response.status_code == 404
    response = api_owner.put(f"/api/v1/episodes/{world['episode']}/", {"project": elsewhere.pk, "title": "Moved"})
    assert response.status_code == 400
    assert "project" in response.json()
    assert Episode.objects.get(pk=world["episode"]).project_id == world["project"]
    assert api_outsider.get(f"/api/v1/episodes/?project={world['project']}").json()["count"] == 0


def test_episode_and_scene_filters(world, api_owner, owner, project):
    other = make_project(owner, "Other")
    other_episode = episode_create(project=other, title="Elsewhere")
    scene_create(episode=other_episode, title="Far")
    episodes = api_owner.get(f"/api/v1/episodes/?project={world['project']}").json()["results"]
    assert [e["id"] for e in episodes] == [world["episode"]]
    scenes = api_owner.get(f"/api/v1/scenes/?episode={other_episode.pk}").json()["results"]
    assert [s["title"] for s in scenes] == ["Far"]
    scenes = api_owner.get(f"/api/v1/scenes/?project={project.pk}").json()["results"]
    assert [s["title"] for s in scenes] == ["Gate"]
    assert api_owner.get("/api/v1/scenes/").json()["count"] == 2


def test_scene_create_and_validation(world, api_member):
    body = {"episode": world["episode"], "title": "Rooftop", "duration_seconds": 7.5, "continuity": {"time": "dusk"}}
    response = api_member.post("/api/v1/scenes/", body, format="json")
    assert response.status_code == 201
    assert response.json()["number"] == 2
    assert response.json()["project"] == world["project"]
    assert response.json()["continuity"] == {"time": "dusk"}
    for bad in ({"duration_seconds": 0}, {"duration_seconds": 601}, {"continuity": ["dusk"]}):
        response = api_member.post("/api/v1/scenes/", {"episode": world["episode"], **bad}, format="json")
        assert response.status_code == 400
        assert next(iter(bad)) in response.json()
    assert Scene.objects.count() == 2


# --- error mapping (tower.core.api.exception_handler) ----------------------------------------------


@pytest.mark.parametrize(
    ("error", "body"),
    [
        (ProjectError("that user is not a member"), {"non_field_errors": ["that user is not a member"]}),
        (CharacterError("unknown fields: x"), {"non_field_errors": ["unknown fields: x"]}),
        (JobError("job 3 does not exist"), {"non_field_errors": ["job 3 does not exist"]}),
        (ValidationError({"width": "multiple of 8"}), {"width": ["multiple of 8"]}),
        (ValidationError({"__all__": ["duplicate"]}), {"non_field_errors": ["duplicate"]}),
        (ValidationError("plain"), {"non_field_errors": ["plain"]}),
    ],
)
def test_domain_and_model_errors_become_400_with_field_errors(error, body):
    response = exception_handler(error, {})
    assert response.status_code == 400
    assert response.data == body


def test_other_errors_keep_drfs_handling():
    assert exception_handler(KeyError("x"), {}) is None  # a real bug stays a 500
