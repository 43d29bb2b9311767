"""REST API v1 for characters: who may do what (the access matrix), and characters themselves."""

from __future__ import annotations

import io

import pytest

from characters.models import Character, ReferenceImage
from characters.services import character_add_reference, character_create
from tests.characters.api_helpers import media_files, upload_body
from tests.factories import make_project, png_bytes

PERSONAS = ["owner", "member", "viewer", "outsider", "anonymous"]

# status for owner, member (editor), viewer, outsider, anonymous
READ = (200, 200, 200, 404, 401)
LIST = (200, 200, 200, 200, 401)  # the outsider's list is empty (asserted below)
WRITE = (200, 200, 403, 404, 401)
CREATE = (201, 201, 403, 404, 401)
DELETE = (204, 204, 403, 404, 401)

UPLOAD = "upload"  # marker: a multipart body with a fresh PNG
UPLOAD_TO_VERSION = "upload-to-version"  # the same, naming the world's character and version

MATRIX = [
    ("get", "/api/v1/characters/", None, LIST),
    ("post", "/api/v1/characters/", {"project": "{project}", "name": "Mei", "design_prompt": "1girl"}, CREATE),
    ("get", "/api/v1/characters/{character}/", None, READ),
    ("put", "/api/v1/characters/{character}/", {"project": "{project}", "name": "Kai", "design_prompt": "x"}, WRITE),
    ("patch", "/api/v1/characters/{character}/", {"trigger_word": "kaiN2"}, WRITE),
    ("delete", "/api/v1/characters/{character}/", None, DELETE),
    ("get", "/api/v1/characters/{character}/references/", None, READ),
    ("post", "/api/v1/characters/{character}/references/", UPLOAD, CREATE),
    ("get", "/api/v1/references/{reference}/", None, READ),
    ("patch", "/api/v1/references/{reference}/", {"note": "front view"}, WRITE),
    ("delete", "/api/v1/references/{reference}/", None, DELETE),
    ("get", "/api/v1/references/", None, LIST),
    ("post", "/api/v1/references/", UPLOAD_TO_VERSION, CREATE),
    ("get", "/api/v1/versions/", None, LIST),
    ("post", "/api/v1/versions/", {"character": "{character}", "name": "Teen"}, CREATE),
    ("get", "/api/v1/versions/{version}/", None, READ),
    ("put", "/api/v1/versions/{version}/", {"character": "{character}", "name": "Adult"}, WRITE),
    ("patch", "/api/v1/versions/{version}/", {"prompt_delta": "older"}, WRITE),
    ("delete", "/api/v1/versions/{version}/", None, DELETE),
    ("get", "/api/v1/variations/", None, LIST),
    ("post", "/api/v1/variations/", {"character": "{character}", "kind": "pose", "name": "Jump"}, CREATE),
    ("get", "/api/v1/variations/{variation}/", None, READ),
    ("put", "/api/v1/variations/{variation}/", {"character": "{character}", "kind": "outfit", "name": "Coat"}, WRITE),
    ("patch", "/api/v1/variations/{variation}/", {"prompt_delta": "scarf"}, WRITE),
    ("delete", "/api/v1/variations/{variation}/", None, DELETE),
]


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
    if body == UPLOAD:
        response = client.post(_fill(url, world), upload_body(), format="multipart")
    elif body == UPLOAD_TO_VERSION:
        extra = {"character": world["character"], "version": world["version"]}
        response = client.post(_fill(url, world), upload_body(**extra), format="multipart")
    else:
        response = getattr(client, method)(_fill(url, world), _fill(body, world), format="json")
    want = expected[PERSONAS.index(persona)]
    assert response.status_code == want, response.content
    if want == 401:
        assert response["WWW-Authenticate"] == "Bearer"
    if persona == "outsider" and method == "get" and want == 200:
        assert response.json()["results"] == [], "an outsider's list must not leak rows"


def test_refused_writes_change_nothing(world, api_viewer, api_outsider, settings):
    files = media_files(settings)
    for client in (api_viewer, api_outsider):
        client.patch(f"/api/v1/characters/{world['character']}/", {"name": "Hacked"})
        client.post(f"/api/v1/characters/{world['character']}/references/", upload_body(), format="multipart")
        client.delete(f"/api/v1/references/{world['reference']}/")
        client.post("/api/v1/characters/", {"project": world["project"], "name": "Spy", "design_prompt": "x"})
    assert Character.objects.get().name == "Kai Nakamura"
    assert ReferenceImage.objects.count() == 1
    assert media_files(settings) == files


# --- characters -----------------------------------------------------------------------------


def test_create_character_returns_resolved_fields(world, api_member):
    body = {
        "project": world["project"],
        "name": "Mei Tanaka",
        "design_prompt": "1girl, black bob, red scarf",
        "attributes": {"hair": "black bob"},
        "bible": {"voice": "quiet"},
        "palette": ["#112233"],
        "learned_negatives": {"extra fingers": 1.2},
        "consistency_threshold": 0.8,
    }
    response = api_member.post("/api/v1/characters/", body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["slug"] == "mei-tanaka"
    assert data["project"] == world["project"]
    # The old dict form is accepted and answered as structured rows.
    (row,) = data["attributes"]
    assert {k: v for k, v in row.items() if k != "id"} == {
        "type": "hair",
        "value": "black bob",
        "prompt_tokens": "",
        "priority": 50,
    }
    assert data["learned_negatives"] == {"extra fingers": 1.2}
    assert data["consistency_threshold"] == 0.8 == data["effective_similarity_threshold"]
    assert data["reference_count"] == 0
    assert data["primary_reference_url"] is None
    assert Character.objects.filter(name="Mei Tanaka", project_id=world["project"]).exists()


def test_character_detail_and_list_show_reference_count_and_primary_url(world, api_owner, character):
    second = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(9, 9, 9))))
    primary = ReferenceImage.objects.get(pk=world["reference"])
    detail = api_owner.get(f"/api/v1/characters/{world['character']}/").json()
    listed = api_owner.get("/api/v1/characters/").json()["results"][0]
    for data in (detail, listed):
        assert data["reference_count"] == 2
        assert data["primary_reference_url"] == f"http://testserver/media/{primary.image.name}"
        assert data["palette"] == Character.objects.get().palette != []
    api_owner.patch(f"/api/v1/references/{second.pk}/", {"is_primary": True})
    listed = api_owner.get("/api/v1/characters/").json()["results"][0]
    assert listed["primary_reference_url"].endswith(second.image.name)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "X"}, "design_prompt"),
        ({"design_prompt": "x"}, "name"),
        ({"name": "X", "design_prompt": "x", "palette": ["red"]}, "palette"),
        ({"name": "X", "design_prompt": "x", "attributes": ["hair"]}, "attributes"),
        ({"name": "X", "design_prompt": "x", "consistency_threshold": 1.2}, "consistency_threshold"),
        ({"name": "Kai Nakamura", "design_prompt": "x", "slug": "kai-nakamura"}, "non_field_errors"),
    ],
)
def test_invalid_character_is_refused_and_nothing_written(world, api_owner, body, field):
    response = api_owner.post("/api/v1/characters/", {"project": world["project"], **body}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Character.objects.count() == 1


def test_character_cannot_be_created_in_unknown_invisible_or_read_only_projects(world, api_owner, api_viewer, outsider):
    theirs = make_project(outsider, "Theirs")
    body = {"name": "Spy", "design_prompt": "x"}
    assert api_owner.post("/api/v1/characters/", {"project": theirs.pk, **body}).status_code == 404
    assert api_owner.post("/api/v1/characters/", {"project": 987654, **body}).status_code == 404
    assert api_viewer.post("/api/v1/characters/", {"project": world["project"], **body}).status_code == 403
    assert api_owner.post("/api/v1/characters/", {"project": "abc", **body}).status_code == 400
    moved = api_owner.put(f"/api/v1/characters/{world['character']}/", {"project": theirs.pk, **body})
    assert moved.status_code == 400
    assert Character.objects.count() == 1


def test_character_search_and_project_filter(world, api_owner, owner, project):
    other = make_project(owner, "Other")
    character_create(project=other, name="Mei", design_prompt="x")
    character_create(project=project, name="Meiko", design_prompt="x")
    names = [c["name"] for c in api_owner.get("/api/v1/characters/?search=mei").json()["results"]]
    assert sorted(names) == ["Mei", "Meiko"]
    names = [c["name"] for c in api_owner.get(f"/api/v1/characters/?project={other.pk}").json()["results"]]
    assert names == ["Mei"]


def test_outsider_filtering_by_a_project_sees_nothing(world, api_outsider):
    assert api_outsider.get(f"/api/v1/characters/?project={world['project']}").json()["count"] == 0
    assert api_outsider.get(f"/api/v1/versions/?character={world['character']}").json()["count"] == 0


def test_character_list_runs_a_constant_number_of_queries(api_owner, project, django_assert_max_num_queries):
    def add(n: int, offset: int) -> None:
        for i in range(n):
            character = character_create(project=project, name=f"C{offset + i}", design_prompt="x")
            for colour in range(2):
                data = png_bytes(8, 8, colour=(offset + i, colour, 0))
                character_add_reference(character=character, upload=io.BytesIO(data))

    add(2, 0)
    # The count, the page, and one prefetch of the page's attributes.
    with django_assert_max_num_queries(3):
        small = api_owner.get("/api/v1/characters/")
    add(10, 100)
    with django_assert_max_num_queries(3):
        large = api_owner.get("/api/v1/characters/")
    assert small.json()["count"] == 2
    assert large.json()["count"] == 12
    assert all(c["reference_count"] == 2 and c["primary_reference_url"] for c in large.json()["results"])


def test_character_delete_removes_its_reference_files(world, api_owner, settings, django_capture_on_commit_callbacks):
    assert media_files(settings)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_owner.delete(f"/api/v1/characters/{world['character']}/").status_code == 204
    assert not Character.objects.exists()
    assert not ReferenceImage.objects.exists()
    assert media_files(settings) == []


@pytest.mark.parametrize("bad", ["abc", "999999"])
def test_unknown_and_non_numeric_ids_are_404(world, api_owner, bad):
    for prefix in ("characters", "references", "versions", "variations"):
        assert api_owner.get(f"/api/v1/{prefix}/{bad}/").status_code == 404, prefix
    assert api_owner.get(f"/api/v1/characters/{bad}/references/").status_code == 404
