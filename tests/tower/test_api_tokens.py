"""REST API v1: the caller's API tokens, and Bearer authentication with them."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.factories import make_project
from tower.models import ApiToken, hash_token


def _bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.mark.parametrize(
    ("method", "url"),
    [("get", "/api/v1/tokens/"), ("post", "/api/v1/tokens/"), ("delete", "/api/v1/tokens/1/")],
)
def test_anonymous_gets_401_with_bearer_challenge(db, api_anonymous, method, url):
    response = getattr(api_anonymous, method)(url, {"name": "x"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


def test_create_returns_the_key_once_and_stores_only_its_hash(api_owner, owner):
    response = api_owner.post("/api/v1/tokens", {"name": "render script"})
    assert response.status_code == 201, response.content
    data = response.json()
    key = data["key"]
    assert key.startswith("twr_")
    assert data["prefix"] == key[:12]
    assert data["name"] == "render script"
    assert data["last_used_at"] is None
    token = ApiToken.objects.get()
    assert token.user == owner
    assert token.key_hash == hash_token(key)
    listed = api_owner.get("/api/v1/tokens").json()["results"]
    assert listed == [
        {
            "id": token.pk,
            "name": "render script",
            "prefix": key[:12],
            "created_at": data["created_at"],
            "last_used_at": None,
        }
    ]
    assert key not in str(api_owner.get("/api/v1/tokens").content)
    assert token.key_hash not in str(api_owner.get("/api/v1/tokens").content)


def test_a_new_key_authenticates_as_its_user_and_records_use(api_owner, owner):
    make_project(owner, "Mine")
    key = api_owner.post("/api/v1/tokens/", {"name": "ci"}).json()["key"]
    response = _bearer(key).get("/api/v1/projects/")
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["results"]] == ["Mine"]
    assert ApiToken.objects.get().last_used_at is not None
    token_keyword = APIClient()
    token_keyword.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert token_keyword.get("/api/v1/projects/").status_code == 200


def test_revoked_token_gets_401(api_owner):
    created = api_owner.post("/api/v1/tokens/", {"name": "old"}).json()
    client = _bearer(created["key"])
    assert client.get("/api/v1/tokens/").status_code == 200
    assert api_owner.delete(f"/api/v1/tokens/{created['id']}/").status_code == 204
    response = client.get("/api/v1/tokens/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("header", ["Bearer twr_not-a-real-token", "Bearer", "Bearer a b"])
def test_wrong_or_malformed_token_gets_401(db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/projects/").status_code == 401


def test_list_shows_only_the_callers_tokens(api_owner, api_member, owner, member, token_for):
    token_for(owner, "owner's")
    token_for(member, "member's")
    assert [t["name"] for t in api_owner.get("/api/v1/tokens/").json()["results"]] == ["owner's"]
    assert [t["name"] for t in api_member.get("/api/v1/tokens/").json()["results"]] == ["member's"]


def test_another_users_token_cannot_be_deleted(api_outsider, owner, token_for):
    key = token_for(owner, "owner's")
    token = ApiToken.objects.get()
    assert api_outsider.delete(f"/api/v1/tokens/{token.pk}/").status_code == 404
    assert api_outsider.delete("/api/v1/tokens/abc/").status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert _bearer(key).get("/api/v1/tokens/").status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [({}, "required"), ({"name": "   "}, "blank"), ({"name": "x" * 101}, "100"), ({"name": "ci"}, "already")],
)
def test_invalid_token_names_are_refused(api_owner, owner, token_for, body, message):
    token_for(owner, "ci")
    response = api_owner.post("/api/v1/tokens/", body)
    assert response.status_code == 400
    assert message in response.json()["name"][0]
    assert ApiToken.objects.count() == 1


def test_same_name_is_fine_for_different_users(api_member, owner, token_for):
    token_for(owner, "ci")
    assert api_member.post("/api/v1/tokens/", {"name": "ci"}).status_code == 201


def test_tokens_cannot_be_read_one_by_one_or_edited(api_owner, owner, token_for):
    token_for(owner, "ci")
    token = ApiToken.objects.get()
    assert api_owner.get(f"/api/v1/tokens/{token.pk}/").status_code == 405
    assert api_owner.patch(f"/api/v1/tokens/{token.pk}/", {"name": "x"}).status_code == 405


@pytest.mark.parametrize("persona", ["owner", "member", "viewer", "outsider"])
def test_every_signed_in_persona_manages_only_their_own_tokens(request, persona, owner, token_for):
    client = request.getfixturevalue(f"api_{persona}")
    user = request.getfixturevalue(persona)
    token_for(owner if persona != "owner" else request.getfixturevalue("outsider"), "someone else's")
    foreign = ApiToken.objects.get()
    assert client.get("/api/v1/tokens/").json()["results"] == []
    created = client.post("/api/v1/tokens/", {"name": "mine"})
    assert created.status_code == 201
    assert [t["name"] for t in client.get("/api/v1/tokens/").json()["results"]] == ["mine"]
    assert client.delete(f"/api/v1/tokens/{foreign.pk}/").status_code == 404
    assert client.delete(f"/api/v1/tokens/{created.json()['id']}/").status_code == 204
    assert list(ApiToken.objects.values_list("user", flat=True)) == [foreign.user_id]
    assert foreign.user_id != user.pk
