"""The ComfyUI client against the fake ComfyUI on a real port: prompts, their outcomes, the queue, uploads and views."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image

from generation.comfyui import (
    ComfyClient,
    ComfyExecutionError,
    ComfyInterrupted,
    ComfyNotFound,
    ComfyProtocolError,
    ComfyRejected,
    PromptStatus,
)
from generation.comfyui.events import Executed, Executing, ExecutionCached, ExecutionStart, ExecutionSuccess
from tests.fakes.comfyui import FakeComfy
from tests.generation.comfyui.helpers import collect, images_graph, run, txt2img


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
        follower = asyncio.create_task(collect(client.follow(accepted.prompt_id, stream=stream, timeout=10)))
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
