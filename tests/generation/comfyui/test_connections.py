"""Reaching a ComfyUI: an unreachable server, an older one, credentials in the backend URL (sent, never shown)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from generation.comfyui import ComfyClient, ComfyUnreachable
from generation.comfyui.events import ExecutionSuccess
from tests.fakes.comfyui import FakeComfy
from tests.generation.comfyui.helpers import collect, images_graph
from tests.support.processes import free_port


async def test_unreachable_server_fails_fast() -> None:
    started = time.monotonic()
    async with ComfyClient(f"http://127.0.0.1:{free_port()}", timeout=2) as comfy:
        with pytest.raises(ComfyUnreachable):
            await comfy.system_stats()
        with pytest.raises(ComfyUnreachable):
            await comfy.submit(images_graph())
        stream = comfy.events(reconnect_timeout=0.3)
        with pytest.raises(ComfyUnreachable):
            await stream.start()
    assert time.monotonic() - started < 3


async def test_older_server_ignoring_client_prompt_id(tmp_path: Any) -> None:
    with FakeComfy(root=tmp_path, honor_prompt_id=False, video_helper_suite=True) as old:
        async with ComfyClient(old.url) as comfy:
            accepted = await comfy.submit(images_graph("old"), prompt_id="tower-job-42")
            assert accepted.prompt_id != "tower-job-42" and accepted.prompt_id_honored is False
            events = await collect(comfy.follow(accepted.prompt_id, timeout=10))
            assert any(isinstance(e, ExecutionSuccess) for e in events)
    with FakeComfy(root=tmp_path / "new", video_helper_suite=True) as new:
        async with ComfyClient(new.url) as comfy:
            accepted = await comfy.submit(images_graph("new"), prompt_id="tower-job-43")
            assert (accepted.prompt_id, accepted.prompt_id_honored) == ("tower-job-43", True)


async def test_errors_never_carry_the_backend_password():

    from generation.comfyui import ComfyClient
    from generation.comfyui.errors import ComfyUnreachable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with ComfyClient(f"http://studio:s3cret-pw@127.0.0.1:{port}", timeout=1) as comfy:
        with pytest.raises(ComfyUnreachable) as caught:
            await comfy.system_stats()
    assert "s3cret-pw" not in str(caught.value)
    assert f"http://127.0.0.1:{port}" in str(caught.value)


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[int]:
    """An aiohttp application on a free local port, for the duration of the block; its port."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_credentials_in_a_backend_url_are_sent_as_basic_auth():
    """A ComfyUI behind a proxy with basic auth: ``http://user:pass@host`` authenticates."""
    import base64

    from aiohttp import web

    from generation.comfyui import ComfyClient

    seen: list[str | None] = []

    async def stats(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"system": {"comfyui_version": "0.3.64"}, "devices": []})

    app = web.Application()
    app.router.add_get("/system_stats", stats)
    async with _serving(app) as port, ComfyClient(f"http://studio:p%40ss@127.0.0.1:{port}", timeout=5) as comfy:
        await comfy.system_stats()
    assert seen == ["Basic " + base64.b64encode(b"studio:p@ss").decode()]


async def test_prompt_and_view_requests_arrive_as_sent_with_credentials():
    """JSON bodies, query values that need quoting and the URL's credentials reach the server
    intact on the requests a job makes (``POST /prompt``, ``GET /view``)."""
    import base64

    from aiohttp import web

    from generation.comfyui import ComfyClient

    seen: list[tuple[str, str | None, Any]] = []

    async def prompt(request: web.Request) -> web.Response:
        seen.append(("prompt", request.headers.get("Authorization"), await request.json()))
        return web.json_response({"prompt_id": "p-1", "number": 0, "node_errors": {}})

    async def view(request: web.Request) -> web.Response:
        seen.append(("view", request.headers.get("Authorization"), dict(request.query)))
        return web.Response(body=b"\x89PNG-bytes", content_type="image/png")

    app = web.Application()
    app.router.add_post("/prompt", prompt)
    app.router.add_get("/view", view)
    name = "kai & mei #2 +100% été.png"
    async with (
        _serving(app) as port,
        ComfyClient(f"http://studio:p%40ss@127.0.0.1:{port}/", timeout=5, client_id="c-9") as comfy,
    ):
        accepted = await comfy.submit({"1": {"class_type": "X", "inputs": {"text": "ä&?"}}}, prompt_id="p-1")
        data = await comfy.view(name, "sub dir/a+b", "temp")
    auth = "Basic " + base64.b64encode(b"studio:p@ss").decode()
    assert accepted.prompt_id == "p-1" and data == b"\x89PNG-bytes"
    assert seen == [
        (
            "prompt",
            auth,
            {"prompt": {"1": {"class_type": "X", "inputs": {"text": "ä&?"}}}, "client_id": "c-9", "prompt_id": "p-1"},
        ),
        ("view", auth, {"filename": name, "subfolder": "sub dir/a+b", "type": "temp"}),
    ]
