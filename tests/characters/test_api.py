"""REST API v1: characters, reference images, versions and variations."""

from __future__ import annotations

import hashlib
import io
import random
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from characters.models import Character, CharacterVersion, ReferenceImage, Variation
from characters.services import character_add_reference, character_create, variation_create, version_create
from tests.factories import UserFactory, make_project, png_bytes
from tests.tower.test_uploads import apng_bytes

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


@pytest.fixture
def character(project):
    return character_create(project=project, name="Kai Nakamura", design_prompt="1boy, silver hair")


@pytest.fixture
def world(project, character):
    reference = character_add_reference(character=character, upload=io.BytesIO(png_bytes()), original_name="kai.png")
    version = version_create(character=character, name="Child")
    variation = variation_create(character=character, kind="outfit", name="Uniform")
    return {
        "project": project.pk,
        "character": character.pk,
        "reference": reference.pk,
        "version": version.pk,
        "variation": variation.pk,
    }


def _fill(value, ids):
    if isinstance(value, str):
        return int(value.format(**ids)) if value.startswith("{") else value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _upload(name: str = "ref.png", data: bytes | None = None, **extra) -> dict:
    data = png_bytes(colour=(1, 2, 3)) if data is None else data
    return {"image": SimpleUploadedFile(name, data, content_type="image/png"), **extra}


def _files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.mark.parametrize(("method", "url", "body", "expected"), MATRIX, ids=[f"{m} {u}" for m, u, *_ in MATRIX])
@pytest.mark.parametrize("persona", PERSONAS)
def test_access_matrix(request, world, persona, method, url, body, expected):
    client = request.getfixturevalue(f"api_{persona}")
    if body == UPLOAD:
        response = client.post(_fill(url, world), _upload(), format="multipart")
    elif body == UPLOAD_TO_VERSION:
        extra = {"character": world["character"], "version": world["version"]}
        response = client.post(_fill(url, world), _upload(**extra), format="multipart")
    else:
        response = getattr(client, method)(_fill(url, world), _fill(body, world), format="json")
    want = expected[PERSONAS.index(persona)]
    assert response.status_code == want, response.content
    if want == 401:
        assert response["WWW-Authenticate"] == "Bearer"
    if persona == "outsider" and method == "get" and want == 200:
        assert response.json()["results"] == [], "an outsider's list must not leak rows"


def test_refused_writes_change_nothing(world, api_viewer, api_outsider, settings):
    files = _files(settings)
    for client in (api_viewer, api_outsider):
        client.patch(f"/api/v1/characters/{world['character']}/", {"name": "Hacked"})
        client.post(f"/api/v1/characters/{world['character']}/references/", _upload(), format="multipart")
        client.delete(f"/api/v1/references/{world['reference']}/")
        client.post("/api/v1/characters/", {"project": world["project"], "name": "Spy", "design_prompt": "x"})
    assert Character.objects.get().name == "Kai Nakamura"
    assert ReferenceImage.objects.count() == 1
    assert _files(settings) == files


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
    assert _files(settings)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_owner.delete(f"/api/v1/characters/{world['character']}/").status_code == 204
    assert not Character.objects.exists()
    assert not ReferenceImage.objects.exists()
    assert _files(settings) == []


# --- references -----------------------------------------------------------------------------


def _raw_multipart(filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body with the file name exactly as given (test clients strip directories)."""
    boundary = "----tower-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_upload_stores_under_a_generated_name_not_the_users(api_owner, character, settings):
    body, content_type = _raw_multipart("../../etc/passwd.png", png_bytes(40, 24))
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.generic("POST", url, body, content_type=content_type)
    assert response.status_code == 201, response.content
    data = response.json()
    media = Path(settings.MEDIA_ROOT).resolve()
    files = _files(settings)
    assert len(files) == 1
    relative = files[0].resolve().relative_to(media)  # raises if the file escaped MEDIA_ROOT
    assert relative.parts[:2] == ("references", str(character.pk))
    assert re.fullmatch(r"[0-9a-f]{32}\.png", relative.name)
    assert not (media.parent / "etc").exists()
    assert data["image"] == f"http://testserver/media/{relative.as_posix()}"
    assert (data["width"], data["height"]) == (40, 24)
    assert data["is_primary"] is True  # the first one
    assert data["sha256"] == hashlib.sha256(png_bytes(40, 24)).hexdigest()
    assert "/" not in data["original_name"]


def test_upload_with_primary_and_note_then_list_primary_first(world, api_member):
    url = f"/api/v1/characters/{world['character']}/references/"
    response = api_member.post(url, _upload(primary="true", note="side view"), format="multipart")
    assert response.status_code == 201
    new_id = response.json()["id"]
    assert response.json()["note"] == "side view"
    listed = api_member.get(url).json()
    assert listed["count"] == 2
    assert [(r["id"], r["is_primary"]) for r in listed["results"]] == [(new_id, True), (world["reference"], False)]
    third = api_member.post(url, _upload(data=png_bytes(colour=(7, 7, 7))), format="multipart")
    assert third.json()["is_primary"] is False  # a primary exists and none was asked for


@pytest.mark.parametrize(
    ("case", "name", "data"),
    [
        ("text renamed to png", "x.png", b"this is just text, not an image\n" * 10),
        ("truncated png", "cut.png", png_bytes(256, 256)[:300]),
        ("gif", "anim.png", png_bytes(fmt="GIF")),
        ("empty", "empty.png", b""),
    ],
)
def test_bad_uploads_are_refused_and_leave_no_file(api_owner, character, settings, case, name, data):
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.post(url, _upload(name, data), format="multipart")
    assert response.status_code == 400, case
    assert "image" in response.json()
    assert ReferenceImage.objects.count() == 0
    assert _files(settings) == []


def test_upload_over_the_byte_limit_is_refused(api_owner, character, settings):
    settings.UPLOAD_MAX_BYTES = 4096
    noise = io.BytesIO()
    Image.frombytes("RGB", (64, 64), random.Random(7).randbytes(64 * 64 * 3)).save(noise, format="PNG")
    assert len(noise.getvalue()) > 4096  # a valid image, only too big
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.post(url, _upload(data=noise.getvalue()), format="multipart")
    assert response.status_code == 400
    assert "larger than the limit" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 0
    assert _files(settings) == []


def test_upload_over_the_pixel_limit_is_refused(api_owner, character, settings):
    settings.UPLOAD_MAX_PIXELS = 64 * 64
    response = api_owner.post(
        f"/api/v1/characters/{character.pk}/references/", _upload(data=png_bytes(65, 64)), format="multipart"
    )
    assert response.status_code == 400
    assert "pixels" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 0
    assert _files(settings) == []


def test_animation_over_the_pixel_limit_in_all_its_frames_is_refused(api_owner, character, settings):
    # 30 frames at 3000×3000: 35 KB on disk, each frame under the limit, 270 M pixels together.
    data = apng_bytes(3000, 3000, frames=30)
    response = api_owner.post(f"/api/v1/characters/{character.pk}/references/", _upload(data=data), format="multipart")
    assert response.status_code == 400
    assert "30 frames of 3000×3000" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 0
    assert _files(settings) == []


def test_small_animated_reference_is_accepted(api_owner, character):
    frames = [Image.new("RGB", (64, 64), (i * 50, 90, 30)) for i in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=80, loop=0)
    url = f"/api/v1/characters/{character.pk}/references/"
    response = api_owner.post(url, _upload(data=buffer.getvalue()), format="multipart")
    assert response.status_code == 201, response.content
    assert ReferenceImage.objects.get().width == 64


def test_duplicate_reference_is_refused_and_leaves_one_file(world, api_owner, settings):
    before = _files(settings)
    assert len(before) == 1
    url = f"/api/v1/characters/{world['character']}/references/"
    response = api_owner.post(url, _upload(data=png_bytes()), format="multipart")  # same bytes as the fixture's
    assert response.status_code == 400
    assert "already a reference" in response.json()["image"][0]
    assert ReferenceImage.objects.count() == 1
    assert _files(settings) == before


def test_upload_without_a_file_is_a_field_error(world, api_owner):
    url = f"/api/v1/characters/{world['character']}/references/"
    response = api_owner.post(url, {"note": "no image"}, format="multipart")
    assert response.status_code == 400
    assert "image" in response.json()


def test_patch_reference_primary_and_note(world, api_owner, character):
    second = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(5, 5, 5))))
    response = api_owner.patch(f"/api/v1/references/{second.pk}/", {"is_primary": True, "note": "best"})
    assert response.status_code == 200
    assert response.json()["is_primary"] is True
    assert response.json()["note"] == "best"
    assert ReferenceImage.objects.get(is_primary=True).pk == second.pk
    refused = api_owner.patch(f"/api/v1/references/{second.pk}/", {"is_primary": False})
    assert refused.status_code == 400
    assert "is_primary" in refused.json()
    assert ReferenceImage.objects.get(is_primary=True).pk == second.pk
    too_long = api_owner.patch(f"/api/v1/references/{second.pk}/", {"note": "x" * 300})
    assert too_long.status_code == 400
    assert api_owner.put(f"/api/v1/references/{second.pk}/", {"note": "x"}).status_code == 405


def test_delete_primary_reference_promotes_the_next_and_removes_the_file(
    world, api_owner, character, settings, django_capture_on_commit_callbacks
):
    second = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(5, 5, 5))))
    first_file = Path(ReferenceImage.objects.get(pk=world["reference"]).image.path)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_owner.delete(f"/api/v1/references/{world['reference']}/").status_code == 204
    assert not first_file.exists()
    assert ReferenceImage.objects.get().pk == second.pk
    assert ReferenceImage.objects.get().is_primary
    assert api_owner.get(f"/api/v1/references/{world['reference']}/").status_code == 404


@pytest.mark.parametrize("bad", ["abc", "999999"])
def test_unknown_and_non_numeric_ids_are_404(world, api_owner, bad):
    for prefix in ("characters", "references", "versions", "variations"):
        assert api_owner.get(f"/api/v1/{prefix}/{bad}/").status_code == 404, prefix
    assert api_owner.get(f"/api/v1/characters/{bad}/references/").status_code == 404


# --- versions and variations ----------------------------------------------------------------


def test_versions_crud_and_filter(world, api_member, project):
    other = character_create(project=project, name="Mei", design_prompt="x")
    version_create(character=other, name="Child")
    response = api_member.post("/api/v1/versions/", {"character": world["character"], "name": "Teen", "order": 2})
    assert response.status_code == 201
    assert response.json()["slug"] == "teen"
    listed = api_member.get(f"/api/v1/versions/?character={world['character']}").json()["results"]
    assert [v["name"] for v in listed] == ["Child", "Teen"]
    duplicate = api_member.post("/api/v1/versions/", {"character": world["character"], "name": "X", "slug": "teen"})
    assert duplicate.status_code == 400
    assert "non_field_errors" in duplicate.json()
    assert CharacterVersion.objects.count() == 3
    response = api_member.patch(f"/api/v1/versions/{world['version']}/", {"prompt_delta": "small"})
    assert response.json()["prompt_delta"] == "small"
    assert api_member.delete(f"/api/v1/versions/{world['version']}/").status_code == 204
    assert CharacterVersion.objects.count() == 2


def test_variations_crud_filter_and_validation(world, api_member, outsider):
    url = "/api/v1/variations/"
    response = api_member.post(url, {"character": world["character"], "kind": "expression", "name": "Smile"})
    assert response.status_code == 201
    assert response.json()["kind"] == "expression"
    bad_kind = api_member.post(url, {"character": world["character"], "kind": "hat", "name": "Cap"})
    assert bad_kind.status_code == 400
    assert "kind" in bad_kind.json()
    theirs = character_create(project=make_project(outsider, "Theirs"), name="Spy", design_prompt="x")
    assert api_member.post(url, {"character": theirs.pk, "kind": "pose", "name": "Sneak"}).status_code == 404
    assert Variation.objects.count() == 2
    listed = api_member.get(f"{url}?character={world['character']}&kind=expression").json()["results"]
    assert [v["name"] for v in listed] == ["Smile"]


def test_version_list_is_scoped_to_visible_projects(world, api_member):
    stranger = UserFactory(username="stranger")
    theirs = character_create(project=make_project(stranger, "Theirs"), name="Spy", design_prompt="x")
    version_create(character=theirs, name="Hidden")
    names = [v["name"] for v in api_member.get("/api/v1/versions/").json()["results"]]
    assert names == ["Child"]


# --- consistency engine: attributes, thresholds, version references, replaces -----------------


def _rows(data):
    return [(a["type"], a["value"], a["prompt_tokens"], a["priority"]) for a in data["attributes"]]


def test_structured_attributes_are_written_as_a_whole_list_and_read_by_priority(world, api_member, character):
    url = f"/api/v1/characters/{world['character']}/"
    body = {
        "attributes": [
            {"type": "eyes", "value": "amber", "priority": 10},
            {"type": "hair", "value": "silver", "prompt_tokens": "(silver hair:1.2)", "priority": 90},
            {"type": "outfit", "value": "navy school uniform"},
        ]
    }
    response = api_member.patch(url, body, format="json")
    assert response.status_code == 200, response.content
    assert _rows(response.json()) == [
        ("hair", "silver", "(silver hair:1.2)", 90),
        ("outfit", "navy school uniform", "", 50),
        ("eyes", "amber", "", 10),
    ]
    hair_id = response.json()["attributes"][0]["id"]
    # A second write replaces the list: the row with an id is changed, the missing ones deleted.
    again = api_member.patch(url, {"attributes": [{"id": hair_id, "type": "hair", "value": "white"}]}, format="json")
    assert again.status_code == 200, again.content
    assert again.json()["attributes"] == [
        {"id": hair_id, "type": "hair", "value": "white", "prompt_tokens": "", "priority": 50}
    ]
    assert api_member.get(url).json()["attributes"] == again.json()["attributes"]
    # The old dict form is still accepted on write.
    old = api_member.patch(url, {"attributes": {"hair": "silver", "eyes": "amber"}}, format="json")
    assert sorted(_rows(old.json())) == [("eyes", "amber", "", 50), ("hair", "silver", "", 50)]


@pytest.mark.parametrize(
    "attributes",
    [
        [{"type": "hair", "value": "a"}, {"type": "hair", "value": "b"}],
        [{"type": "hair", "value": "a", "priority": 101}],
        [{"type": "wings", "value": "a"}],
        [{"type": "hair", "value": ""}],
        [{"id": 999999, "type": "hair", "value": "a"}],
    ],
    ids=["repeated type", "priority over 100", "unknown type", "no value", "someone else's id"],
)
def test_invalid_attributes_are_refused_and_nothing_changes(world, api_owner, character, attributes):
    from characters.services import character_set_attributes

    character_set_attributes(character=character, attributes=[{"type": "eyes", "value": "amber"}])
    response = api_owner.patch(f"/api/v1/characters/{world['character']}/", {"attributes": attributes}, format="json")
    assert response.status_code == 400, response.content
    assert "attributes" in response.json()
    assert list(character.attribute_set.values_list("type", "value")) == [("eyes", "amber")]


def test_another_characters_attribute_id_is_refused(world, api_owner, project, character):
    from characters.services import character_set_attributes

    other = character_create(project=project, name="Mei", design_prompt="1girl")
    (theirs,) = character_set_attributes(character=other, attributes=[{"type": "hair", "value": "black"}])
    body = {"attributes": [{"id": theirs.pk, "type": "hair", "value": "stolen"}]}
    response = api_owner.patch(f"/api/v1/characters/{world['character']}/", body, format="json")
    assert response.status_code == 400
    theirs.refresh_from_db()
    assert theirs.value == "black" and theirs.character_id == other.pk


def test_similarity_threshold_empty_follows_the_project_and_a_value_overrides_it(world, api_owner, project):
    url = f"/api/v1/characters/{world['character']}/"
    project.threshold_similarity = 0.66
    project.save(update_fields=["threshold_similarity"])
    data = api_owner.get(url).json()
    assert data["consistency_threshold"] is None and data["effective_similarity_threshold"] == 0.66
    data = api_owner.patch(url, {"consistency_threshold": 0.9}, format="json").json()
    assert data["consistency_threshold"] == 0.9 == data["effective_similarity_threshold"]
    data = api_owner.patch(url, {"consistency_threshold": None}, format="json").json()
    assert data["consistency_threshold"] is None and data["effective_similarity_threshold"] == 0.66
    assert Character.objects.get().consistency_threshold is None


def test_palette_gating_fields_are_read_and_written(world, api_owner):
    url = f"/api/v1/characters/{world['character']}/"
    data = api_owner.get(url).json()
    assert data["palette_gated"] is False and data["palette_threshold"] is None
    data = api_owner.patch(url, {"palette_gated": True, "palette_threshold": 12.5}, format="json").json()
    assert data["palette_gated"] is True and data["palette_threshold"] == 12.5
    assert api_owner.patch(url, {"palette_threshold": 101}, format="json").status_code == 400
    assert Character.objects.get().palette_threshold == 12.5


def test_versions_carry_states_and_their_own_references(world, api_member, character):
    created = api_member.post(
        "/api/v1/versions/",
        {"character": world["character"], "name": "Old", "age_state": "elder", "emotional_state": "sad"},
        format="json",
    )
    assert created.status_code == 201, created.content
    version = created.json()
    assert (version["age_state"], version["emotional_state"], version["references"]) == ("elder", "sad", [])
    bad = api_member.post(
        "/api/v1/versions/", {"character": world["character"], "name": "X", "age_state": "baby"}, format="json"
    )
    assert bad.status_code == 400 and "age_state" in bad.json()

    first = api_member.post(
        "/api/v1/references/",
        _upload(data=png_bytes(colour=(200, 10, 10)), character=world["character"], version=version["id"]),
        format="multipart",
    )
    assert first.status_code == 201, first.content
    second = api_member.post(
        f"/api/v1/characters/{world['character']}/references/",
        _upload(data=png_bytes(colour=(10, 200, 10)), version=version["id"]),
        format="multipart",
    )
    assert second.status_code == 201, second.content
    assert (first.json()["version"], first.json()["is_primary"]) == (version["id"], True)  # the version's first
    assert (second.json()["version"], second.json()["is_primary"]) == (version["id"], False)
    # The character's own primary is untouched by the version's.
    assert ReferenceImage.objects.get(pk=world["reference"]).is_primary
    listed = api_member.get(f"/api/v1/versions/{version['id']}/").json()["references"]
    assert [r["id"] for r in listed] == [first.json()["id"], second.json()["id"]]
    only = api_member.get(f"/api/v1/references/?version={version['id']}").json()["results"]
    assert {r["id"] for r in only} == {first.json()["id"], second.json()["id"]}
    # Making the second primary demotes the first only.
    api_member.patch(f"/api/v1/references/{second.json()['id']}/", {"is_primary": True}, format="json")
    primaries = set(ReferenceImage.objects.filter(is_primary=True).values_list("pk", flat=True))
    assert primaries == {world["reference"], second.json()["id"]}


def test_a_reference_for_another_characters_version_is_refused(world, api_owner, project, outsider, settings):
    other = character_create(project=project, name="Mei", design_prompt="1girl")
    foreign = version_create(character=other, name="Teen")
    theirs = version_create(
        character=character_create(project=make_project(outsider, "Theirs"), name="Spy", design_prompt="x"), name="X"
    )
    files = _files(settings)
    for version_id in (foreign.pk, theirs.pk, 987654):
        for url, extra in (
            ("/api/v1/references/", {"character": world["character"]}),
            (f"/api/v1/characters/{world['character']}/references/", {}),
        ):
            response = api_owner.post(url, _upload(version=version_id, **extra), format="multipart")
            assert response.status_code == 400, response.content
            assert "version" in response.json()
    assert ReferenceImage.objects.count() == 1
    assert _files(settings) == files


def test_variations_declare_what_they_replace(world, api_member):
    created = api_member.post(
        "/api/v1/variations/",
        {"character": world["character"], "kind": "pose", "name": "Wig", "replaces": "hair"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["replaces"] == "hair"
    outfit = api_member.post(
        "/api/v1/variations/", {"character": world["character"], "kind": "outfit", "name": "Coat"}, format="json"
    )
    assert outfit.json()["replaces"] == "outfit"
    bad = api_member.patch(f"/api/v1/variations/{created.json()['id']}/", {"replaces": "wings"}, format="json")
    assert bad.status_code == 400
    assert Variation.objects.get(pk=created.json()["id"]).replaces == "hair"


def test_the_characters_primary_url_is_its_own_not_a_versions(api_owner, character):
    version = version_create(character=character, name="Teen")
    character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(7, 7, 7))), version=version)
    own = character_add_reference(character=character, upload=io.BytesIO(png_bytes(colour=(8, 8, 8))))
    detail = api_owner.get(f"/api/v1/characters/{character.pk}/").json()
    listed = api_owner.get("/api/v1/characters/").json()["results"][0]
    for data in (detail, listed):
        assert data["primary_reference_url"].endswith(own.image.name)
