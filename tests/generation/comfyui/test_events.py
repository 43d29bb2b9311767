"""The ComfyUI client's event stream against the fake on a real port: progress and previews, a dropped or
stalled WebSocket, a restarted server, and the message types a reader ignores."""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

import pytest
from PIL import Image

from generation.comfyui import ComfyClient, ComfyPromptLost, PromptStatus
from generation.comfyui.events import Event, Executed, Executing, ExecutionSuccess, Preview, Progress
from tests.fakes.comfyui import FakeComfy
from tests.generation.comfyui.helpers import collect, images_graph, run, txt2img


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
        follower = asyncio.create_task(collect(client.follow(accepted.prompt_id, stream=stream, timeout=10)))
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
        events = await collect(client.follow(accepted.prompt_id, stream=stream, stall_timeout=0.2, timeout=10))
    assert events == [ExecutionSuccess(accepted.prompt_id, None)]
    assert time.monotonic() - started < 5


async def test_server_restarted_mid_job_loses_the_prompt(fake: FakeComfy, client: ComfyClient) -> None:
    fake.configure(holds={"2"})
    async with client.events(max_backoff=0.1) as stream:
        accepted = await client.submit(images_graph("restart"))
        follower = asyncio.create_task(collect(client.follow(accepted.prompt_id, stream=stream, timeout=10)))
        await fake.wait_for_async(lambda: fake.held_nodes() == ["2"])
        fake.restart(downtime=0.2)
        with pytest.raises(ComfyPromptLost):
            await follower
    with pytest.raises(ComfyPromptLost):
        await client.prompt_status(accepted.prompt_id)
    async with ComfyClient(fake.url) as stranger:
        assert await stranger.prompt_status(accepted.prompt_id) is PromptStatus.UNKNOWN
    assert (await client.submit(images_graph("after"))).number == 0


@pytest.mark.parametrize("metadata", [False, True])
async def test_binary_previews_with_and_without_metadata(client: ComfyClient, metadata: bool) -> None:
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 3, "color": 65280}},
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    async with client.events(preview_metadata=metadata) as stream:
        accepted = await client.submit(graph)
        events = await collect(client.follow(accepted.prompt_id, stream=stream, timeout=10))
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 3
    assert {(p.format, p.node_id, p.prompt_id) for p in previews} == (
        {("png", "2", accepted.prompt_id)} if metadata else {("png", None, None)}
    )
    with Image.open(io.BytesIO(previews[0].image)) as img:
        assert img.size == (24, 16)


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
