"""Overload is shed: a web process answers a bounded number of HTTP requests at once and refuses
the rest at once with a 503 and Retry-After, changing nothing, instead of queueing them."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async

from generation.models import Job
from tests.generation.engine_helpers import shipped
from tower.api_v1 import api_token_create
from tower.asgi import application, django_asgi_app
from tower.core.shedding import BUSY, LoadShedding

pytestmark = pytest.mark.django_db(transaction=True)

BOUND = 3


class Gate:
    """Holds every request it admits until released: the requests in progress a burst meets."""

    def __init__(self, app):
        self.app = app
        self.held = 0
        self.open = asyncio.Event()

    async def __call__(self, scope, receive, send):
        self.held += 1
        await self.open.wait()
        await self.app(scope, receive, send)

    async def wait_holding(self, count: int) -> None:
        async with asyncio.timeout(30):
            while self.held < count:
                await asyncio.sleep(0.01)


@pytest.fixture
def gate():
    return Gate(django_asgi_app)


@pytest.fixture
def client(gate):
    app = LoadShedding(gate, max_in_flight=BOUND, exempt=["/api/health"])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver", timeout=30)


@pytest.fixture
def bearer(owner, project):
    _, key = api_token_create(user=owner, name="burst")
    return {"Authorization": f"Bearer {key}"}


async def test_a_burst_beyond_the_bound_is_refused_at_once_and_the_admitted_requests_succeed(
    client, gate, bearer, project
):
    admitted = [asyncio.create_task(client.get("/api/v1/jobs", headers=bearer)) for _ in range(BOUND)]
    await gate.wait_holding(BOUND)

    # The burst is answered while every admitted request is still held: refused, not queued.
    refused = await asyncio.gather(*(client.get("/api/v1/jobs", headers=bearer) for _ in range(5)))
    gate.open.set()
    served = await asyncio.gather(*admitted)

    assert [r.status_code for r in refused] == [503] * 5
    assert all(r.headers["retry-after"] == "1" for r in refused)
    assert refused[0].json() == {"detail": BUSY}
    assert [r.status_code for r in served] == [200] * BOUND
    assert all(r.json()["count"] == 0 for r in served)
    assert gate.held == BOUND  # the refused requests never reached Django


async def test_a_refused_post_creates_nothing_and_the_same_post_admitted_does(client, gate, bearer, project):
    body = {"project": project.pk, "template": (await sync_to_async(shipped)("weightless-image")).slug}
    holding = [asyncio.create_task(client.get("/api/v1/jobs", headers=bearer)) for _ in range(BOUND)]
    await gate.wait_holding(BOUND)

    refused = await client.post("/api/v1/jobs", json=body, headers=bearer)

    assert refused.status_code == 503
    assert await Job.objects.acount() == 0
    gate.open.set()
    await asyncio.gather(*holding)
    admitted = await client.post("/api/v1/jobs", json=body, headers=bearer)
    assert admitted.status_code in (201, 422), admitted.text  # recorded either way
    assert await Job.objects.acount() == 1


async def test_a_page_is_refused_with_a_page_and_the_health_check_is_never_refused(client, gate, owner):
    holding = [asyncio.create_task(client.get("/")) for _ in range(BOUND)]
    await gate.wait_holding(BOUND)

    page = await client.get("/jobs/")
    health = asyncio.create_task(client.get("/api/health"))
    await gate.wait_holding(BOUND + 1)  # let through although every slot is taken
    gate.open.set()
    health = await health
    await asyncio.gather(*holding)

    assert page.status_code == 503
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == "1"
    assert "busy" in page.text
    assert "status" in health.json()  # the health check's own answer


async def test_websockets_are_not_counted():
    class Socket:
        calls = 0

        async def __call__(self, scope, receive, send):
            Socket.calls += 1

    shedding = LoadShedding(Socket(), max_in_flight=1)
    shedding.in_flight = 1  # the one slot taken by an HTTP request
    await shedding({"type": "websocket", "path": "/ws/jobs/"}, None, None)
    assert Socket.calls == 1
    assert shedding.refused == 0


def test_the_served_application_sheds_http(settings):
    assert isinstance(application.application_mapping["http"], LoadShedding)
    assert application.application_mapping["http"].max_in_flight == settings.WEB_MAX_IN_FLIGHT
