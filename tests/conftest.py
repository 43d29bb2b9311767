"""Personas and shared fixtures: an owner, a member (editor), a viewer and an outsider."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.support.personas import MEMBER, OUTSIDER, OWNER, VIEWER, api_client_for, persona, team_project
from tower.models import ApiToken, hash_token, new_raw_token


@pytest.fixture(autouse=True)
def _store_thread_connections():
    """The engine's store thread keeps its database connection for the life of the process: it is
    closed after each test, before the test database is emptied or dropped."""
    yield
    from generation.engine.driver import StoreThread

    StoreThread.close_connections()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path: Path) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    # Real hashing costs ~0.3 s a user; tests about passwords still verify them through Django.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner(db):
    return persona(OWNER)


@pytest.fixture
def member(db):
    return persona(MEMBER)


@pytest.fixture
def viewer(db):
    return persona(VIEWER)


@pytest.fixture
def outsider(db):
    return persona(OUTSIDER)


@pytest.fixture
def project(owner, member, viewer):
    return team_project(owner, member=member, viewer=viewer, name="Skyline Academy")


@pytest.fixture
def api_owner(owner) -> APIClient:
    return api_client_for(owner)


@pytest.fixture
def api_member(member) -> APIClient:
    return api_client_for(member)


@pytest.fixture
def api_viewer(viewer) -> APIClient:
    return api_client_for(viewer)


@pytest.fixture
def api_outsider(outsider) -> APIClient:
    return api_client_for(outsider)


@pytest.fixture
def api_anonymous() -> APIClient:
    return api_client_for(None)


@pytest.fixture
def token_for():
    """Create a real API token for a user and return its raw value."""

    def make(user, name: str = "script") -> str:
        raw = new_raw_token()
        ApiToken.objects.create(user=user, name=name, key_hash=hash_token(raw), prefix=raw[:8])
        return raw

    return make


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """The real Redis when REDIS_URL is set (CI's second pass), else Tower's embedded one."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from tower.core.embedded import EmbeddedRedis

    server = EmbeddedRedis(var_dir=tmp_path_factory.mktemp("redis"), persist=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def channel_layer(settings, redis_url):
    """A real Redis channel layer (embedded or CI's), isolated by a per-test prefix."""
    import uuid

    from channels.layers import channel_layers

    # Tower's own configuration (capacity, timeouts), on the test's Redis with its own prefix.
    config = dict(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}))
    host = dict((config.get("hosts") or [{}])[0])
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tower.core.layers.ChannelLayer",
            "CONFIG": {
                **config,
                "hosts": [{**host, "address": redis_url}],
                "prefix": f"test-{uuid.uuid4().hex[:8]}",
            },
        }
    }
    channel_layers.backends.clear()
    yield channel_layers["default"]
    channel_layers.backends.clear()
