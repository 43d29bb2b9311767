"""The ComfyUI client against the fake ComfyUI on a real port."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from generation.comfyui import (
    ComfyClient,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyNotFound,
    ComfyPromptLost,
    ComfyProtocolError,
    ComfyRejected,
    ComfyUnreachable,
    PromptStatus,
)
from generation.comfyui.events import (
    Event,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionStart,
    ExecutionSuccess,
    Preview,
    Progress,
)
from tests.fakes.comfyui import FakeComfy
from tests.support.processes import free_port


def images_graph(prefix: str = "t", color: int = 0x336699, batch: int = 2) -> dict[str, Any]:
    """Weightless nodes only: stills, an animated WebP, a preview, an MP4 and a VHS video."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 40, "height": 24, "batch_size": batch, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
        "3": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": f"{prefix}_anim",
                "fps": 6.0,
                "lossless": False,
                "quality": 80,
                "method": "default",
            },
        },
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "5": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
        "6": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["5", 0], "filename_prefix": f"video/{prefix}", "format": "mp4", "codec": "h264"},
        },
        "7": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8,
                "loop_count": 0,
                "filename_prefix": f"{prefix}_vhs",
                "format": "video/h264-mp4",
                "pingpong": False,
                "save_output": True,
            },
        },
    }


def txt2img(ckpt: str, seed: int = 1, steps: int = 4, prefix: str = "gen") -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "kai, portrait", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


async def run(client: ComfyClient, graph: dict[str, Any], **submit: Any) -> tuple[str, list[Event]]:
    async with client.events() as stream:
        accepted = await client.submit(graph, **submit)
        events = [e async for e in client.follow(accepted.prompt_id, stream=stream, timeout=15)]
    return accepted.prompt_id, events


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeComfy]:
    with FakeComfy(
        root=tmp_path / "comfyui",
        checkpoints=["anime_v1.safetensors", "anime_v2.safetensors"],
        video_helper_suite=True,
    ) as server:
        yield server


@pytest.fixture
async def client(fake: FakeComfy) -> Any:
    async with ComfyClient(fake.url, timeout=5) as comfy:
        yield comfy


async def test_system_stats_and_object_info(fake: FakeComfy, client: ComfyClient) -> None:
    fake.configure(vram_total=8_000, vram_free=2_000)
    stats = await client.system_stats()
    assert stats.comfyui_version == "0.3.64"
    assert stats.devices[0].vram_total == 8_000
    assert stats.vram_used_fraction == pytest.approx(0.75)
    info = await client.object_info()
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [
        "anime_v1.safetensors",
        "anime_v2.safetensors",
    ]
    assert list(await client.object_info("EmptyImage")) == ["EmptyImage"]
    assert await client.object_info("NoSuchNode") == {}
    features = await client.features()
    assert features.supports_preview_metadata and not features.jobs_api


async def test_success_with_several_outputs(fake: FakeComfy, client: ComfyClient) -> None:
    workflow = {"nodes": [], "note": "ui graph"}
    graph = images_graph("shot")
    prompt_id, events = await run(client, graph, extra_data={"extra_pnginfo": {"workflow": workflow}})
    assert isinstance(events[0], ExecutionStart)
    assert isinstance(events[-1], Executing) and events[-1].is_end
    assert any(isinstance(e, ExecutionSuccess) for e in events)
    executed = {e.node for e in events if isinstance(e, Executed)}
    assert executed == {"2", "3", "4", "6", "7"}
    assert await client.prompt_status(prompt_id) is PromptStatus.DONE

    entry = await client.history(prompt_id)
    assert entry is not None and entry.status is PromptStatus.DONE and entry.completed
    kinds = sorted((f.node_id, f.kind, f.type) for f in entry.outputs)
    assert kinds == [
        ("2", "image", "output"),
        ("2", "image", "output"),
        ("3", "animation", "output"),
        ("4", "image", "temp"),
        ("4", "image", "temp"),
        ("6", "video", "output"),
        ("7", "video", "output"),
    ]
    still = next(f for f in entry.outputs if f.node_id == "2")
    data = await client.view(still.filename, still.subfolder, still.type)
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (40, 24)
        assert json.loads(img.text["prompt"]) == graph
        assert json.loads(img.text["workflow"]) == workflow
    video = next(f for f in entry.outputs if f.node_id == "6")
    assert video.subfolder == "video"
    assert (await client.view(video.filename, video.subfolder))[4:8] == b"ftyp"
    webp = next(f for f in entry.outputs if f.node_id == "3")
    with Image.open(io.BytesIO(await client.view(webp.filename))) as img:
        assert getattr(img, "n_frames", 1) == 2


async def test_cached_rerun_executes_nothing(fake: FakeComfy, client: ComfyClient) -> None:
    graph = images_graph("cache")
    first_id, _ = await run(client, graph)
    second_id, events = await run(client, graph)
    cached = next(e for e in events if isinstance(e, ExecutionCached))
    assert sorted(cached.nodes) == sorted(graph)
    assert [e for e in events if isinstance(e, Executing) and e.node is not None] == []
    assert {e.node for e in events if isinstance(e, Executed)} == {"2", "3", "4", "6", "7"}
    first, second = await client.history(first_id), await client.history(second_id)
    assert first and second and [f.filename for f in first.outputs] == [f.filename for f in second.outputs]


async def test_validation_error_names_node_input_and_value(client: ComfyClient) -> None:
    with pytest.raises(ComfyRejected) as caught:
        await client.submit(txt2img("x.safetensors"))
    assert caught.value.status == 400
    assert caught.value.error_type == "prompt_outputs_failed_validation"
    assert "node 4 (CheckpointLoaderSimple): ckpt_name 'x.safetensors' not in the server's list" in str(caught.value)
    assert caught.value.node_errors["4"]["class_type"] == "CheckpointLoaderSimple"

    graph = txt2img("anime_v1.safetensors")
    graph["3"]["inputs"]["steps"] = 0
    del graph["5"]["inputs"]["height"]
    with pytest.raises(ComfyRejected) as caught:
        await client.submit(graph)
    message = str(caught.value)
    assert "node 3 (KSampler): steps 0 is below the minimum 1" in message
    assert "node 5 (EmptyLatentImage): required input height is missing" in message


async def test_malformed_prompt_is_rejected_with_the_server_text(client: ComfyClient) -> None:
    with pytest.raises(ComfyRejected) as caught:
        await client.submit("hello")  # type: ignore[arg-type]
    assert caught.value.status == 500
    assert "500 Internal Server Error" in str(caught.value)


async def test_partially_invalid_prompt_is_queued_with_node_errors(client: ComfyClient) -> None:
    graph = images_graph("partial")
    graph["9"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "broken"}}
    accepted = await client.submit(graph)
    assert list(accepted.node_errors) == ["9"]


async def test_runtime_error(fake: FakeComfy, client: ComfyClient) -> None:
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 16, "height": 16}},
        "3": {"class_type": "JoinImageWithAlpha", "inputs": {"image": ["1", 0], "alpha": ["2", 0]}},
        "4": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "err"}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "err_ok"}},
    }
    with pytest.raises(ComfyExecutionError) as caught:
        await run(client, graph)
    err = caught.value
    assert (err.node_id, err.node_type, err.exception_type) == ("4", "ImageBatch", "RuntimeError")
    assert "Sizes of tensors must match" in err.message
    assert await client.prompt_status(err.prompt_id) is PromptStatus.ERROR
    entry = await client.history(err.prompt_id)
    assert entry is not None and [f.node_id for f in entry.outputs] == ["6"]

    fake.configure(failures={"KSampler": ("torch.OutOfMemoryError", "CUDA out of memory")})
    with pytest.raises(ComfyExecutionError, match=r"node 3 \(KSampler\) failed: torch\.OutOfMemoryError"):
        await run(client, txt2img("anime_v1.safetensors"))


async def test_interrupt(fake: FakeComfy, client: ComfyClient) -> None:
    fake.configure(holds={"2"})
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 5}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "int"}},
    }
    async with client.events() as stream:
        accepted = await client.submit(graph)
        follower = asyncio.create_task(_collect(client.follow(accepted.prompt_id, stream=stream, timeout=10)))
        await fake.wait_for_async(lambda: fake.held_nodes() == ["2"])
        assert await client.prompt_status(accepted.prompt_id) is PromptStatus.RUNNING
        await client.interrupt("some-other-prompt")  # ignored: not the running one
        assert not fake.server.state.interrupted
        await client.interrupt(accepted.prompt_id)
        fake.release()
        with pytest.raises(ComfyInterrupted) as caught:
            await follower
    assert caught.value.node_id == "3"
    assert await client.prompt_status(accepted.prompt_id) is PromptStatus.INTERRUPTED


async def _collect(events: Any) -> list[Event]:
    return [e async for e in events]


async def test_sampler_progress_previews_and_model_loads(fake: FakeComfy, client: ComfyClient) -> None:
    fake.configure(sampler_previews=True, model_load_delay=0.01)
    _, events = await run(client, txt2img("anime_v1.safetensors", steps=5))
    assert [(e.node, e.value, e.max) for e in events if isinstance(e, Progress)] == [("3", v, 5.0) for v in range(1, 6)]
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 5 and previews[0].node_id == "3" and previews[0].image[:4] == b"\x89PNG"
    await run(client, txt2img("anime_v1.safetensors", seed=2))  # loader cached: no new load
    await run(client, txt2img("anime_v2.safetensors"))
    await run(client, txt2img("anime_v1.safetensors"))
    assert fake.counters.model_loads == {"anime_v1.safetensors": 2, "anime_v2.safetensors": 1}
    await client.free(unload_models=True, free_memory=True)
    await run(client, txt2img("anime_v1.safetensors"))
    assert fake.counters.model_loads["anime_v1.safetensors"] == 3


async def test_websocket_dropped_mid_job_reconnects_and_sees_the_end(fake: FakeComfy, client: ComfyClient) -> None:
    fake.configure(holds={"2"})
    async with client.events() as stream:
        accepted = await client.submit(images_graph("drop"))
        follower = asyncio.create_task(_collect(client.follow(accepted.prompt_id, stream=stream, timeout=10)))
        await fake.wait_for_async(lambda: fake.held_nodes() == ["2"])
        fake.drop_websockets()
        await fake.wait_for_async(lambda: client.client_id in fake.connected_clients(), what="reconnect")
        fake.release()
        events = await follower
        assert stream.reconnects == 1
    assert isinstance(next(e for e in reversed(events) if not isinstance(e, Executing)), ExecutionSuccess)


async def test_stalled_websocket_falls_back_to_polling(fake: FakeComfy, client: ComfyClient) -> None:
    async with client.events() as stream:
        fake.stall_websockets(drop=True)
        accepted = await client.submit(images_graph("stall"))
        started = time.monotonic()
        events = await _collect(client.follow(accepted.prompt_id, stream=stream, stall_timeout=0.2, timeout=10))
    assert events == [ExecutionSuccess(accepted.prompt_id, None)]
    assert time.monotonic() - started < 5


async def test_server_restarted_mid_job_loses_the_prompt(fake: FakeComfy, client: ComfyClient) -> None:
    fake.configure(holds={"2"})
    async with client.events(max_backoff=0.1) as stream:
        accepted = await client.submit(images_graph("restart"))
        follower = asyncio.create_task(_collect(client.follow(accepted.prompt_id, stream=stream, timeout=10)))
        await fake.wait_for_async(lambda: fake.held_nodes() == ["2"])
        fake.restart(downtime=0.2)
        with pytest.raises(ComfyPromptLost):
            await follower
    with pytest.raises(ComfyPromptLost):
        await client.prompt_status(accepted.prompt_id)
    async with ComfyClient(fake.url) as stranger:
        assert await stranger.prompt_status(accepted.prompt_id) is PromptStatus.UNKNOWN
    assert (await client.submit(images_graph("after"))).number == 0


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
            events = await _collect(comfy.follow(accepted.prompt_id, timeout=10))
            assert any(isinstance(e, ExecutionSuccess) for e in events)
    with FakeComfy(root=tmp_path / "new", video_helper_suite=True) as new:
        async with ComfyClient(new.url) as comfy:
            accepted = await comfy.submit(images_graph("new"), prompt_id="tower-job-43")
            assert (accepted.prompt_id, accepted.prompt_id_honored) == ("tower-job-43", True)


async def test_queue_status_and_delete(fake: FakeComfy, client: ComfyClient) -> None:
    fake.configure(holds={"blocker"})
    first = await client.submit(
        {
            **images_graph("q1"),
            "blocker": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "blocker"}},
        }
    )
    second = await client.submit(images_graph("q2", color=1))
    await fake.wait_for_async(lambda: fake.held_nodes() == ["blocker"])
    queue = await client.queue()
    assert (queue.running, queue.pending) == ([first.prompt_id], [second.prompt_id])
    assert await client.prompt_status(second.prompt_id) is PromptStatus.PENDING
    await client.delete_from_queue([second.prompt_id])
    assert await client.prompt_status(second.prompt_id, expect_known=False) is PromptStatus.UNKNOWN
    fake.release()
    await fake.wait_for_async(lambda: first.prompt_id in fake.history)
    assert await client.prompt_status(first.prompt_id) is PromptStatus.DONE


async def test_upload_and_view(fake: FakeComfy, client: ComfyClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (9, 9, 9)).save(buf, format="PNG")
    uploaded = await client.upload_image(buf.getvalue(), "ref.png", subfolder="kai")
    assert (uploaded.name, uploaded.reference) == ("ref.png", "kai/ref.png")
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": uploaded.reference}},
        "2": {
            "class_type": "ImageScaleBy",
            "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact", "scale_by": 2.0},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "ref"}},
    }
    prompt_id, _ = await run(client, graph)
    entry = await client.history(prompt_id)
    assert entry is not None
    with Image.open(io.BytesIO(await client.view(entry.outputs[0].filename))) as img:
        assert img.size == (40, 20)
    with pytest.raises(ComfyProtocolError):
        await client.view(entry.outputs[0].filename, max_bytes=10)
    with pytest.raises(ComfyNotFound):
        await client.view("nope.png")
    with pytest.raises(ComfyRejected):
        await client.view("../secret.png")
    with pytest.raises(ComfyRejected):
        await client.upload_image(b"x", "../evil.png")


@pytest.mark.parametrize("metadata", [False, True])
async def test_binary_previews_with_and_without_metadata(client: ComfyClient, metadata: bool) -> None:
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 3, "color": 65280}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    async with client.events(preview_metadata=metadata) as stream:
        accepted = await client.submit(graph)
        events = await _collect(client.follow(accepted.prompt_id, stream=stream, timeout=10))
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 3
    assert {(p.format, p.node_id, p.prompt_id) for p in previews} == (
        {("png", "2", accepted.prompt_id)} if metadata else {("png", None, None)}
    )
    with Image.open(io.BytesIO(previews[0].image)) as img:
        assert img.size == (24, 16)


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
        yield site._server.sockets[0].getsockname()[1]
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


async def _everything(client: ComfyClient, stream: Any, graph: dict[str, Any]) -> list[Event]:
    """Every event the stream delivers until the prompt's end marker."""
    await client.submit(graph)
    seen: list[Event] = []
    while not (seen and isinstance(seen[-1], Executing) and seen[-1].is_end):
        seen.append(await stream.get(10))
    return seen


async def test_a_stream_drops_the_message_types_its_reader_ignores(client: ComfyClient) -> None:
    from generation.comfyui.events import ProgressState, Status

    async with client.events(ignore=("progress_state", "status")) as stream:
        events = await _everything(client, stream, images_graph("ignored"))
    assert not [e for e in events if isinstance(e, ProgressState)]
    # Queue broadcasts are dropped; the status addressed to this socket on connect is not.
    assert [e.sid for e in events if isinstance(e, Status)] == [client.client_id]
    assert {e.node for e in events if isinstance(e, Executed)} == {"2", "3", "4", "6", "7"}
    # A stream that ignores nothing gets them all.
    async with client.events() as stream:
        events = await _everything(client, stream, images_graph("not-ignored"))
    assert [e for e in events if isinstance(e, ProgressState)]
    statuses = [e.sid for e in events if isinstance(e, Status)]
    assert statuses[0] == client.client_id and statuses[1:] and set(statuses[1:]) == {None}
