"""GET /api/health: every part Tower depends on, checked live; 503 naming what is broken."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis
from asgiref.sync import async_to_sync
from django.db import connections
from django_q.conf import Conf

from tests.factories import BackendFactory
from tests.support.processes import QCluster, free_port, running_qcluster, wait_until
from tower import health

pytestmark = [pytest.mark.redis, pytest.mark.django_db]

URL = "/api/health"


@pytest.fixture
def client(client, owner):
    """Signed in: the checks' detail is for the studio's people (anonymous callers: the status)."""
    client.force_login(owner)
    return client


# Redis databases of their own, so a cluster started by another test module (or still expiring
# from one) is never counted here, and ours never elsewhere.
WORKER_DB = 9
EMPTY_DB = 10


def with_db(url: str, db: int) -> str:
    if url.startswith("unix://"):  # urlunsplit would drop the empty authority ("unix:/path")
        path, _, query = url.partition("?")
        pairs = [(key, value) for key, value in parse_qsl(query) if key != "db"] + [("db", str(db))]
        return f"{path}?{urlencode(pairs)}"
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def clusters_reporting(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return len(client.keys(f"{Conf.Q_STAT}:*"))
    finally:
        client.close()


@pytest.fixture(scope="module")
def worker_url(redis_url) -> str:
    return with_db(redis_url, WORKER_DB)


@pytest.fixture(scope="module")
def live_worker(worker_url, tmp_path_factory) -> Iterator[QCluster]:
    """A real ``manage.py qcluster`` on the test Redis, signing its status with our SECRET_KEY."""
    from django.conf import settings

    var_dir = tmp_path_factory.mktemp("worker")
    env = {name: value for name, value in os.environ.items() if name not in {"DATABASE_URL", "SECRET_KEY_FILE"}}
    env.update(
        REDIS_URL=worker_url,
        SECRET_KEY=settings.SECRET_KEY,
        TOWER_VAR_DIR=str(var_dir),
        TOWER_WORKERS="1",
        LOG_LEVEL="WARNING",
    )
    with running_qcluster(env=env, log_path=var_dir / "qcluster.log", grace=15) as cluster:
        wait_until(
            lambda: cluster.exited() or clusters_reporting(worker_url) > 0,
            timeout=30,
            what="the qcluster to report in",
        )
        if cluster.exited():
            pytest.fail(f"qcluster exited with {cluster.process.returncode}:\n{cluster.log()}")
        yield cluster


def point_redis_at(settings, url: str) -> None:
    """Broker and channel layer both on ``url``, as settings.py wires them from REDIS_URL."""
    settings.REDIS_URL = url
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "tower.core.layers.ChannelLayer",
            "CONFIG": {"hosts": [{"address": url}], "prefix": "tower-test:ch"},
        }
    }


@pytest.fixture
def healthy(settings, live_worker, worker_url):
    """Everything working: the test Redis, a live worker, enough disk, no backends."""
    point_redis_at(settings, worker_url)
    settings.HEALTH_MIN_FREE_BYTES = 1
    return settings


def get_health(client) -> tuple[int, dict]:
    response = client.get(URL)
    assert response["Content-Type"] == "application/json"
    return response.status_code, response.json()


# --- All well -------------------------------------------------------------------------------------


def test_all_well_is_200_with_every_check_ok(client, healthy):
    # A cluster reports 0 workers for a moment while its pool (re)spawns; wait for the full pool.
    deadline = time.monotonic() + 15
    while True:
        status, body = get_health(client)
        clusters = body["checks"]["workers"].get("clusters") or [{}]
        if clusters[0].get("workers") == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    assert status == 200, body
    assert body["status"] == "ok"
    assert body["failing"] == []
    checks = body["checks"]
    for name in ("database", "broker", "channel_layer", "storage", "workers"):
        assert checks[name]["ok"] is True, (name, checks[name])
    assert checks["database"]["vendor"] == connections["default"].vendor
    assert checks["workers"]["alive"] >= 1
    assert checks["workers"]["clusters"][0]["workers"] == 1  # TOWER_WORKERS=1 in that cluster
    assert checks["storage"]["free_bytes"] > 0
    assert checks["storage"]["min_free_bytes"] == 1
    assert checks["backends"] == []  # none configured is not a failure


def test_health_needs_no_login_and_is_never_cached(client, healthy):
    response = client.get(URL)

    assert response.status_code == 200
    assert "no-cache" in response["Cache-Control"]


def test_anonymous_callers_get_the_status_only_and_token_holders_the_detail(healthy, owner, token_for):
    from django.test import Client

    BackendFactory(name="gpu-box-secret", url="http://127.0.0.1:9/")
    anonymous = Client().get(URL)
    assert anonymous.json() == {"status": "degraded"}
    assert anonymous.status_code == 503
    assert b"gpu-box-secret" not in anonymous.content
    assert b"127.0.0.1" not in anonymous.content
    with_token = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {token_for(owner)}")
    assert with_token.status_code == 503
    assert "gpu-box-secret" in json.dumps(with_token.json()["checks"]["backends"])


def test_health_only_answers_get(client, healthy):
    assert client.post(URL).status_code == 405


def test_each_request_checks_again(client, healthy, worker_url):
    assert client.get(URL).status_code == 200

    healthy.HEALTH_MIN_FREE_BYTES = 2**62

    assert client.get(URL).status_code == 503


# --- Failures -------------------------------------------------------------------------------------


@contextmanager
def unreachable_database(tmp_path: Path) -> Iterator[None]:
    """Swap the default connection for one whose database cannot be opened."""
    original = connections["default"]
    settings_dict = {**original.settings_dict}
    if original.vendor == "sqlite":
        settings_dict["NAME"] = str(tmp_path / "no-such-folder" / "tower.sqlite3")
    else:
        settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    settings_dict["PASSWORD"] = "db-s3cret-password"
    broken = original.__class__(settings_dict, alias="default")
    connections["default"] = broken
    try:
        yield
    finally:
        broken.close()
        connections["default"] = original


def test_database_down_is_503_naming_the_database(client, healthy, tmp_path):
    with unreachable_database(tmp_path):
        response = client.get(URL)
        body = async_to_sync(health.collect)()  # what a signed-in caller would read

    # Without the database nobody can be identified, so the answer is the status alone.
    assert response.status_code == 503
    assert response.json() == {"status": "degraded"}
    assert body["status"] == "degraded"
    assert body["failing"] == ["database"]
    assert body["checks"]["database"]["ok"] is False
    assert "OperationalError" in body["checks"]["database"]["error"]
    assert "db-s3cret-password" not in response.content.decode()


def test_broker_unreachable_is_503_naming_broker_channel_layer_and_workers(client, healthy):
    point_redis_at(healthy, f"redis://:redis-s3cret-pw@127.0.0.1:{free_port()}/0")

    started = time.monotonic()
    response = client.get(URL)
    elapsed = time.monotonic() - started

    body = response.json()
    assert response.status_code == 503
    assert {"broker", "channel_layer", "workers"} <= set(body["failing"])
    assert "database" not in body["failing"]
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["channel_layer"]["ok"] is False
    assert body["checks"]["workers"]["alive"] == 0
    assert elapsed < 3 * health.CHECK_TIMEOUT  # bounded, not hung on a dead Redis
    assert "redis-s3cret-pw" not in response.content.decode()


def test_no_worker_running_is_503_naming_workers(client, healthy, redis_url):
    point_redis_at(healthy, with_db(redis_url, EMPTY_DB))
    assert clusters_reporting(with_db(redis_url, EMPTY_DB)) == 0

    status, body = get_health(client)

    assert status == 503
    assert body["failing"] == ["workers"]
    assert body["checks"]["workers"]["alive"] == 0
    assert "qcluster" in body["checks"]["workers"]["error"]


def test_low_disk_is_503_naming_storage(client, healthy):
    healthy.HEALTH_MIN_FREE_BYTES = 2**62

    status, body = get_health(client)

    assert status == 503
    assert body["failing"] == ["storage"]
    storage = body["checks"]["storage"]
    assert storage["ok"] is False
    assert storage["min_free_bytes"] == 2**62
    assert 0 < storage["free_bytes"] < 2**62


def test_storage_is_measured_where_media_will_be_written(client, healthy, tmp_path):
    healthy.MEDIA_ROOT = tmp_path / "not" / "created" / "yet"

    status, body = get_health(client)

    assert status == 200, body
    assert body["checks"]["storage"]["free_bytes"] > 0


# --- Backends ---------------------------------------------------------------------------------------


def test_an_unreachable_backend_is_503_naming_backends(client, healthy):
    BackendFactory(name="gpu-down", url=f"http://producer:comfy-s3cret-pw@127.0.0.1:{free_port()}")
    BackendFactory(name="gpu-off", url=f"http://127.0.0.1:{free_port()}", enabled=False)

    response = client.get(URL)

    body = response.json()
    assert response.status_code == 503
    assert body["failing"] == ["backends"]
    (entry,) = body["checks"]["backends"]  # the disabled one is not checked
    assert entry["name"] == "gpu-down"
    assert entry["reachable"] is False
    assert entry["error"]
    assert entry["version"] is None
    assert "comfy-s3cret-pw" not in response.content.decode()


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A TCP port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_backends_are_checked_concurrently_with_a_timeout(client, healthy, black_hole, monkeypatch):
    monkeypatch.setattr(health, "BACKEND_TIMEOUT", 1.0)
    for index in range(3):
        BackendFactory(name=f"gpu-hung-{index}", url=f"{black_hole}/{index}")

    started = time.monotonic()
    response = client.get(URL)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert [entry["reachable"] for entry in response.json()["checks"]["backends"]] == [False] * 3
    assert elapsed < 2.5  # three 1 s timeouts one after another would take 3 s


def test_a_reachable_backend_reports_version_and_vram(client, healthy):
    from tests.fakes.comfyui import FakeComfy

    with FakeComfy() as fake:
        BackendFactory(name="gpu-1", url=fake.url)

        status, body = get_health(client)

    assert status == 200, body
    (entry,) = body["checks"]["backends"]
    assert entry["name"] == "gpu-1"
    assert entry["reachable"] is True
    assert entry["error"] is None
    assert entry["version"]
    assert entry["vram_total"] > 0
    assert 0 <= entry["vram_free"] <= entry["vram_total"]
    assert entry["vram_used_fraction"] == pytest.approx(1 - entry["vram_free"] / entry["vram_total"], abs=1e-6)


def test_one_backend_down_among_reachable_ones_is_503(client, healthy):
    from tests.fakes.comfyui import FakeComfy

    with FakeComfy() as fake:
        BackendFactory(name="gpu-1", url=fake.url)
        BackendFactory(name="gpu-2", url=f"http://127.0.0.1:{free_port()}")

        status, body = get_health(client)

    assert status == 503
    assert body["failing"] == ["backends"]
    assert {entry["name"]: entry["reachable"] for entry in body["checks"]["backends"]} == {
        "gpu-1": True,
        "gpu-2": False,
    }


# --- Nothing secret -------------------------------------------------------------------------------


def test_a_degraded_report_reveals_no_secret_credential_or_path(client, healthy, tmp_path, settings):
    point_redis_at(healthy, f"redis://:redis-s3cret-pw@127.0.0.1:{free_port()}/0")
    BackendFactory(name="gpu-down", url=f"http://producer:comfy-s3cret-pw@127.0.0.1:{free_port()}")
    settings.MEDIA_ROOT = tmp_path / "alice-private-studio" / "media"

    with unreachable_database(tmp_path):
        response = client.get(URL)
        text = json.dumps(async_to_sync(health.collect)())  # what a signed-in caller would read

    assert response.status_code == 503
    assert set(json.loads(text)["failing"]) >= {"database", "broker", "channel_layer", "workers"}
    for secret in (settings.SECRET_KEY, "redis-s3cret-pw", "comfy-s3cret-pw", "db-s3cret-password"):
        assert secret not in text
    assert "alice-private-studio" not in text
    assert str(settings.VAR_DIR) not in text


def test_scrub_removes_credentials_secrets_and_local_paths(settings):
    settings.REDIS_URL = "redis://:another-redis-pw@cache:6379/0"
    text = (
        f"Error connecting to unix socket: {settings.VAR_DIR}/run/redis.sock; "
        "http://user:pw@gpu-1:8188 refused; redis://:another-redis-pw@cache:6379/0; "
        f"key {settings.SECRET_KEY}; file {settings.MEDIA_ROOT}/outputs/a.png"
    )

    scrubbed = health.scrub(text)

    assert "another-redis-pw" not in scrubbed
    assert "user:pw@" not in scrubbed
    assert settings.SECRET_KEY not in scrubbed
    assert str(settings.VAR_DIR) not in scrubbed
    assert str(settings.MEDIA_ROOT) not in scrubbed
    assert "<var>/run/redis.sock" in scrubbed
    assert "<media>/outputs/a.png" in scrubbed
    assert "gpu-1:8188" in scrubbed  # what is not secret stays, so the message is still useful


def test_an_outage_is_logged_once_as_a_warning_and_its_end_once(client, healthy, caplog, monkeypatch):
    """A monitor polls during an outage: one warning naming the part, not an ERROR per request."""
    monkeypatch.setattr(health, "_last_failing", ())
    caplog.set_level(logging.DEBUG, logger="tower.health")
    caplog.set_level(logging.DEBUG, logger="django.request")
    assert client.get(URL).status_code == 200

    healthy.HEALTH_MIN_FREE_BYTES = 2**62
    assert [client.get(URL).status_code for _ in range(3)] == [503, 503, 503]
    healthy.HEALTH_MIN_FREE_BYTES = 1
    assert client.get(URL).status_code == 200

    above_debug = [(r.name, r.levelname, r.getMessage()) for r in caplog.records if r.levelno > logging.DEBUG]
    assert above_debug == [
        ("tower.health", "WARNING", "health: degraded, failing: storage"),
        ("tower.health", "INFO", "health: ok again (was failing: storage)"),
    ]
