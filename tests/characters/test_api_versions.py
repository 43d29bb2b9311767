"""REST API v1: versions and variations, and the consistency fields (attributes, thresholds, palette, states)."""

from __future__ import annotations

import io

import pytest

from characters.models import Character, CharacterVersion, ReferenceImage, Variation
from characters.services import character_add_reference, character_create, version_create
from tests.characters.api_helpers import media_files, upload_body
from tests.factories import UserFactory, make_project, png_bytes


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
        upload_body(data=png_bytes(colour=(200, 10, 10)), character=world["character"], version=version["id"]),
        format="multipart",
    )
    assert first.status_code == 201, first.content
    second = api_member.post(
        f"/api/v1/characters/{world['character']}/references/",
        upload_body(data=png_bytes(colour=(10, 200, 10)), version=version["id"]),
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
    files = media_files(settings)
    for version_id in (foreign.pk, theirs.pk, 987654):
        for url, extra in (
            ("/api/v1/references/", {"character": world["character"]}),
            (f"/api/v1/characters/{world['character']}/references/", {}),
        ):
            response = api_owner.post(url, upload_body(version=version_id, **extra), format="multipart")
            assert response.status_code == 400, response.content
            assert "version" in response.json()
    assert ReferenceImage.objects.count() == 1
    assert media_files(settings) == files


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
