"""The ASGI entry point runs Django's middleware chain synchronously: pages, the API, a form post
and the async health view keep answering as they did through Django's own ASGI handler."""

from __future__ import annotations

import httpx
import pytest

from tower.api_v1 import api_token_create
from tower.asgi import django_asgi_app
from tower.core.sync_handler import SyncChainASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client():
    transport = httpx.ASGITransport(app=django_asgi_app)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30)


async def test_the_entry_point_is_the_sync_chain_handler():
    assert isinstance(django_asgi_app, SyncChainASGIHandler)


async def test_the_api_answers_a_token_and_refuses_without(client, owner, project):
    from asgiref.sync import sync_to_async

    _, key = await sync_to_async(api_token_create)(user=owner, name="sync chain")
    listed = await client.get("/api/v1/jobs?page_size=5", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200 and listed.json()["count"] == 0
    refused = await client.get("/api/v1/jobs")
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"


async def test_pages_keep_their_middleware_answers(client):
    page = await client.get("/")
    assert page.status_code == 302 and "/login" in page.headers["location"]  # auth
    login = await client.get(page.headers["location"])
    assert login.status_code == 200
    assert "script-src 'self'" in login.headers["Content-Security-Policy"]  # tower's CSP middleware
    assert login.headers["X-Frame-Options"] == "DENY"
    assert "csrftoken" in login.cookies
    # A post without the CSRF token is refused by the CSRF middleware, as before.
    refused = await client.post("/login/", data={"username": "x", "password": "y"})
    assert refused.status_code == 403


async def test_the_async_health_view_still_answers(client):
    health = await client.get("/api/health")
    assert health.status_code in (200, 503)  # 503 when this test's Redis or worker is missing
    assert health.json()["status"] in ("ok", "degraded", "down", "failing")
    assert health.headers["Cache-Control"].startswith("max-age=0")  # never_cache ran
