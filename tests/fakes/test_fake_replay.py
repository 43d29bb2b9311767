"""The fake ComfyUI against the recordings of a real ComfyUI 0.3.64 (shared/comfyui/)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from tests.fakes.comfyui import FakeComfy
from tests.fakes.comfyui_recordings import recording, ws_scenarios

SCENARIOS = {s["scenario"]: s for s in ws_scenarios()}
REPLAYED = [name for name, s in SCENARIOS.items() if "post_prompt" in s]
# Scenarios whose cache state depends on the prompt run just before them in the recording.
PREREQUISITES = {
    "cached_rerun": ["success"],
    "partially_cached": ["success", "cached_rerun"],
    "binary_with_preview_metadata": ["binary_save_image_websocket"],
    "interrupt_targeted": ["interrupt"],
}
# Where the recording posted /interrupt: (node that had just started, body).
INTERRUPTS = {
    "interrupt": [("11", {})],
    "interrupt_targeted": [("11", {"prompt_id": "not-the-running-one"}), ("12", "RUNNING")],
}


def signature(kind: str, msg: Any) -> tuple:
    """What must match: the message type, plus the node for executing/executed."""
    if kind == "binary":
        return ("binary", msg)
    if msg["type"] in ("executing", "executed"):
        return (msg["type"], msg["data"].get("node"))
    return (msg["type"],)


def recorded(name: str) -> list[tuple]:
    out = []
    for row in SCENARIOS[name]["messages"]:
        out.append(signature("binary", row["event_type"]) if row["kind"] == "binary" else signature("text", row["msg"]))
    return out


async def receive(ws: ClientConnection, count: int, on_text: Any = None) -> list[tuple]:
    got: list[tuple] = []
    while len(got) < count:
        try:
            raw = await asyncio.wait_for(ws.recv(), 5)
        except TimeoutError:
            break
        if isinstance(raw, bytes):
            got.append(signature("binary", int.from_bytes(raw[:4], "big")))
            continue
        msg = json.loads(raw)
        got.append(signature("text", msg))
        if on_text is not None:
            await on_text(msg)
    return got


async def no_more(ws: ClientConnection) -> bool:
    """True when nothing else arrives shortly after the expected messages."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.15)
        return False
    return True


async def run_scenario(fake: FakeComfy, http: httpx.AsyncClient, name: str) -> dict[str, list[tuple]]:
    scenario = SCENARIOS[name]
    observer = SCENARIOS.get(f"{name}__observer")
    expected = {name: recorded(name)}
    async with contextlib.AsyncExitStack() as stack:
        ws = await stack.enter_async_context(connect(f"{fake.ws_url}?clientId={scenario['client_id']}"))
        sockets = {name: ws}
        if observer is not None:
            expected[observer["scenario"]] = recorded(observer["scenario"])
            sockets[observer["scenario"]] = await stack.enter_async_context(
                connect(f"{fake.ws_url}?clientId={observer['client_id']}")
            )
        if scenario.get("feature_flags_sent"):
            await ws.send(json.dumps({"type": "feature_flags", "data": scenario["feature_flags_sent"]}))
        await fake.wait_for_async(lambda: len(fake.connected_clients()) == len(sockets), what="sockets")
        response = await http.post("/prompt", json=scenario["post_prompt"]["request"])
        assert response.status_code == scenario["post_prompt"]["status"]
        prompt_id = response.json()["prompt_id"]
        pending = list(INTERRUPTS.get(name, []))

        async def maybe_interrupt(msg: dict) -> None:
            if pending and msg["type"] == "executing" and msg["data"].get("node") == pending[0][0]:
                body = pending.pop(0)[1]
                body = {"prompt_id": prompt_id} if body == "RUNNING" else body
                assert (await http.post("/interrupt", json=body)).status_code == 200

        results = await asyncio.gather(
            *(
                receive(sock, len(expected[key]), maybe_interrupt if key == name else None)
                for key, sock in sockets.items()
            )
        )
        got = dict(zip(sockets, results, strict=True))
        for key, sock in sockets.items():
            if not await no_more(sock):
                got[key].append(("<unexpected extra message>",))
    await fake.wait_for_async(lambda: prompt_id in fake.history, what="history entry")
    return {"got": got, "expected": expected}


@pytest.mark.parametrize("name", REPLAYED)
async def test_websocket_sequence_matches_recording(name: str) -> None:
    delays = {"ImageBlur": 0.05} if name.startswith("interrupt") else {}
    with FakeComfy(delays=delays) as fake:
        async with httpx.AsyncClient(base_url=fake.url, timeout=10) as http:
            for before in PREREQUISITES.get(name, []):
                await run_scenario(fake, http, before)
            result = await run_scenario(fake, http, name)
    assert result["got"] == result["expected"]


# --- HTTP bodies -----------------------------------------------------------------------------


def strip_tracebacks(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip_tracebacks(v) for k, v in value.items() if k != "traceback"}
    if isinstance(value, list):
        return [strip_tracebacks(v) for v in value]
    return value


def shape(value: Any) -> Any:
    """Key structure and value types, not values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


@pytest.fixture
def fake() -> Any:
    with FakeComfy() as server:
        yield server


@pytest.fixture
async def http(fake: FakeComfy) -> Any:
    async with httpx.AsyncClient(base_url=fake.url, timeout=10) as client:
        yield client


INVALID = {k: v for k, v in recording("prompt_invalid.json").items() if isinstance(v, dict) and "request" in v}


@pytest.mark.parametrize("case", list(INVALID))
async def test_invalid_prompts_answer_like_the_recording(http: httpx.AsyncClient, case: str) -> None:
    record = INVALID[case]
    body = record["request"]["body"]
    if isinstance(body, str):
        response = await http.post("/prompt", content=body, headers={"Content-Type": "application/json"})
    else:
        response = await http.post("/prompt", json=body)
    assert response.status_code == record["status"]
    assert response.headers["content-type"] == record["content_type"]
    if isinstance(record["body"], str):
        assert response.text == record["body"]
    else:
        assert strip_tracebacks(response.json()) == strip_tracebacks(record["body"])


async def test_valid_prompt_variants_like_the_recording(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    record = recording("prompt_ok.json")
    numbers = []
    for key in sorted(k for k in record if k[0] in "abcdefghi" and "request" in record[k]):
        case = record[key]
        response = await http.post(case["request"]["path"], json=case["request"]["body"])
        assert response.status_code == 200, key
        body = response.json()
        assert set(body) == {"prompt_id", "number", "node_errors"}
        assert body["node_errors"] == case["body"]["node_errors"], key
        if "prompt_id" in case["request"]["body"]:
            assert body["prompt_id"] == case["body"]["prompt_id"]
        numbers.append(body["number"])
        await fake.wait_for_async(lambda pid=body["prompt_id"]: pid in fake.history and not fake.queue_ids()[0])
    # Counter per POST, explicit numbers bypass it, front negates it (recorded: 0 1 2 3 7.5 -4 5 6 7).
    assert numbers == [0, 1, 2, 3, 7.5, -4, 5, 6, 7]
    entry = (await http.get("/history/my-custom-id-58acb64d")).json()["my-custom-id-58acb64d"]
    recorded_entry = record["c_history_after_reuse"]["my-custom-id-58acb64d"]
    assert shape(entry) == shape(recorded_entry)
    assert entry["prompt"][3] == {"client_id": "client-abc"}
    assert entry["outputs"] == recorded_entry["outputs"]


async def test_history_entries_are_shaped_like_the_recording(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    recorded_history = recording("history.json")
    for name in ("success", "runtime_error", "no_client_id"):
        await run_scenario(fake, http, name)
    by_key = {
        "success": "GET /history/{id} after success",
        "runtime_error": "GET /history/{id} after runtime_error",
        "no_client_id": "GET /history/{id} after no_client_id",
    }
    mine = list(fake.history.values())
    for entry, key in zip(mine, by_key.values(), strict=True):
        expected = next(iter(recorded_history[key]["body"].values()))
        assert list(entry) == ["prompt", "outputs", "status", "meta"]
        assert shape(strip_tracebacks(entry)) == shape(strip_tracebacks(expected))
        assert entry["status"]["status_str"] == expected["status"]["status_str"]
        assert [m[0] for m in entry["status"]["messages"]] == [m[0] for m in expected["status"]["messages"]]
        assert entry["outputs"].keys() == expected["outputs"].keys()
        assert entry["prompt"][4] == expected["prompt"][4]
    assert (await http.get("/history/does-not-exist")).json() == {}
    page = (await http.get("/history", params={"max_items": 2, "offset": 1})).json()
    assert list(page) == list(fake.history)[1:3]
    assert list((await http.get("/history", params={"max_items": 1})).json()) == list(fake.history)[-1:]


async def test_view_answers_like_the_recording(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    for name in ("success", "multi_frame_video"):
        await run_scenario(fake, http, name)
    # The recorded PreviewImage prefix was random; use the one this fake drew.
    preview = fake.history[next(iter(fake.history))]["outputs"]["10"]["images"][0]["filename"]
    for case in recording("view.json")["cases"]:
        params = dict(case["params"])
        if params.get("filename", "").startswith("ComfyUI_temp_"):
            params["filename"] = preview
        response = await http.get("/view", params=params)
        assert response.status_code == case["status"], case["note"]
        if case["status"] != 200:
            assert response.content == b""
            continue
        assert response.headers["content-type"] == case["headers"]["Content-Type"], case["note"]
        assert response.headers["content-disposition"] == f'filename="{params["filename"].split(" [")[0]}"'
        magic = bytes.fromhex(case["body_first16_hex"])
        assert response.content[:4] == magic[:4], case["note"]


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, format="PNG")
    return buf.getvalue()


async def test_upload_image_like_the_recording(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    record = recording("upload_image.json")
    for name, case in record["cases"].items():
        files = None
        if case["file_part"] is not None:
            content = png((200, 0, 0)) if "DIFFERENT" in name else png((0, 0, 200))
            files = {"image": (case["file_part"]["filename"], content, "image/png")}
        response = await http.post("/upload/image", data=case["form_fields"], files=files or {"x": ("", b"")})
        assert response.status_code == case["status"], name
        if case["status"] == 200:
            assert response.json() == case["body"], name
        else:
            assert response.content == b""
    info = (await http.get("/object_info/LoadImage")).json()["LoadImage"]["input"]["required"]["image"]
    assert "upl_test.png" in info[0] and "sub1/upl_test.png" not in info[0]
    workflow = record["loadimage_workflow"]
    async with connect(f"{fake.ws_url}?clientId={workflow['request']['client_id']}") as ws:
        response = await http.post("/prompt", json=workflow["request"])
        assert response.status_code == 200
        got = await receive(ws, len(workflow["ws_types"]))
    assert [g[0] for g in got] == workflow["ws_types"]
    entry = fake.history[response.json()["prompt_id"]]
    assert {k: [i["filename"] for i in v["images"]] for k, v in entry["outputs"].items()} == {
        k: [i["filename"] for i in v["images"]] for k, v in workflow["history"].items()
    }


async def test_queue_operations_like_the_recording(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    record = recording("queue.json")
    fake.configure(holds={"q_long"})

    def job(prefix: str) -> dict:
        graph = {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 7}},
            prefix: {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
        }
        return {"prompt": graph, "client_id": "queue-main"}

    running = (await http.post("/prompt", json=job("q_long"))).json()["prompt_id"]
    await fake.wait_for_async(lambda: fake.held_nodes() == ["q_long"])
    pending = [(await http.post("/prompt", json=job(f"q_p{i}"))).json()["prompt_id"] for i in range(3)]
    body = (await http.get("/queue")).json()
    recorded_item = record["1_GET_queue_running_plus_2_pending"]["raw_item_shape_example"]
    assert shape(body["queue_pending"][0]) == shape(recorded_item)
    assert [item[1] for item in body["queue_running"]] == [running]
    assert [len(item) for item in body["queue_running"] + body["queue_pending"]] == [5] * 4
    assert (await http.get("/prompt")).json() == {"exec_info": {"queue_remaining": 4}}
    for ids, expect_pending in (
        ([pending[0]], pending[1:]),
        ([running], pending[1:]),
        (["no-such-id"], pending[1:]),
    ):
        response = await http.post("/queue", json={"delete": ids})
        assert (response.status_code, response.content) == (200, b"")
        assert sorted(i[1] for i in (await http.get("/queue")).json()["queue_pending"]) == sorted(expect_pending)
    assert (await http.post("/queue", json={"clear": True})).status_code == 200
    after = (await http.get("/queue")).json()
    assert [i[1] for i in after["queue_running"]] == [running] and after["queue_pending"] == []
    fake.release()
    await fake.wait_for_async(lambda: running in fake.history)
    for prompt_id in pending:
        assert (await http.get(f"/history/{prompt_id}")).json() == {}
    free = await http.post("/free", json={"unload_models": True, "free_memory": True})
    assert (free.status_code, free.content) == (200, b"")


async def test_loadimage_deleted_after_validation_fails_at_run_time(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    record = recording("queue.json")["4_loadimage_file_deleted_after_validation"]
    await http.post("/upload/image", files={"image": ("to_delete.png", png((1, 2, 3)), "image/png")})
    fake.pause()
    response = await http.post("/prompt", json=record["post"]["request"])
    assert response.status_code == 200
    (fake.input_dir / "to_delete.png").unlink()
    fake.resume()
    prompt_id = response.json()["prompt_id"]
    entry = await fake.wait_for_async(lambda: fake.history.get(prompt_id))
    error = entry["status"]["messages"][-1]
    expected = record["history_status"]["messages"][-1]
    assert (error[0], error[1]["exception_type"], error[1]["node_type"]) == (
        expected[0],
        expected[1]["exception_type"],
        expected[1]["node_type"],
    )
    assert error[1]["exception_message"].startswith("[Errno 2] No such file or directory")
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False


@pytest.mark.parametrize(
    ("path", "record", "key"),
    [
        ("/system_stats", "system_stats.json", None),
        ("/queue", "queue_empty.json", "GET /queue"),
        ("/prompt", "queue_empty.json", "GET /prompt"),
        ("/embeddings", "embeddings.json", None),
        ("/models", "models.json", "/models"),
        ("/models/checkpoints", "models.json", "/models/checkpoints"),
        ("/api/models/checkpoints", "models.json", "/api/models/checkpoints"),
        ("/models/nonexistent_folder", "models.json", "/models/nonexistent_folder"),
        ("/features", "features.json", "/features"),
        ("/api/features", "features.json", "/api/features"),
        ("/extensions", "extensions.json", None),
        ("/object_info/EmptyImage", "object_info_single.json", "/object_info/EmptyImage"),
        ("/object_info/NoSuchNode", "object_info_single.json", "/object_info/NoSuchNode"),
    ],
)
async def test_simple_routes_answer_the_recorded_bodies(
    http: httpx.AsyncClient, path: str, record: str, key: str | None
) -> None:
    expected = recording(record)
    expected = expected[key] if key else expected
    response = await http.get(path)
    assert response.status_code == expected["status"]
    if expected["status"] == 200:
        assert response.json() == expected["body"]


async def test_object_info_lists_the_configured_models(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    fake.configure(checkpoints=["a.safetensors"], loras=["l.safetensors"], vaes=["v.safetensors"])
    info = (await http.get("/api/object_info")).json()
    assert len(info) == len(recording("object_info_full.json"))
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == ["a.safetensors"]
    assert info["LoraLoader"]["input"]["required"]["lora_name"][0] == ["l.safetensors"]
    assert info["VAELoader"]["input"]["required"]["vae_name"][0] == ["v.safetensors", "pixel_space"]
    assert (await http.get("/models/loras")).json() == ["l.safetensors"]


WEIGHTLESS = recording("weightless_nodes.json")["passed"]
SINKS = {
    "IMAGE": ("PreviewImage", "images", {}),
    "MASK": ("MaskPreview", "mask", {}),
    "VIDEO": ("SaveVideo", "video", {"filename_prefix": "video/w", "format": "auto", "codec": "auto"}),
}


def default_value(spec: list) -> Any:
    kind, extra = spec[0], spec[1] if len(spec) > 1 else {}
    if isinstance(kind, list):
        return kind[0]
    if "default" in extra:
        return extra["default"]
    if kind == "COMBO":
        return extra["options"][0]
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[kind]


def weightless_graph(name: str, info: dict) -> dict:
    """The recording's harness: the node on 64x64 sources with default widgets, sunk into previews."""
    graph: dict[str, Any] = {
        "img": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x808080}},
        "mask": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}},
        "video": {"class_type": "CreateVideo", "inputs": {"images": ["img", 0], "fps": 8.0}},
    }
    sources = {"IMAGE": ["img", 0], "MASK": ["mask", 0], "VIDEO": ["video", 0]}
    inputs = {
        key: sources[spec[0]] if isinstance(spec[0], str) and spec[0] in sources else default_value(spec)
        for key, spec in info["input"]["required"].items()
    }
    graph["n"] = {"class_type": name, "inputs": inputs}
    for slot, out_type in enumerate(info["output"]):
        if out_type in SINKS:
            sink, field, extra = SINKS[out_type]
            graph[f"sink{slot}"] = {"class_type": sink, "inputs": {field: ["n", slot], **extra}}
    return graph


async def test_weightless_nodes_all_execute(fake: FakeComfy, http: httpx.AsyncClient) -> None:
    info = (await http.get("/object_info")).json()
    failed = {}
    for name in WEIGHTLESS:
        response = await http.post("/prompt", json={"prompt": weightless_graph(name, info[name])})
        if response.status_code != 200:
            failed[name] = response.json()
            continue
        prompt_id = response.json()["prompt_id"]
        entry = await fake.wait_for_async(lambda pid=prompt_id: fake.history.get(pid), what=name)
        if entry["status"]["status_str"] != "success":
            failed[name] = entry["status"]["messages"][-1]
    assert failed == {}


@pytest.mark.parametrize(
    ("node", "inputs", "size"),
    [
        ("ImageScale", {"upscale_method": "bilinear", "width": 96, "height": 0, "crop": "disabled"}, (96, 48)),
        ("ImageCrop", {"width": 512, "height": 16, "x": 8, "y": 0}, (120, 16)),
        ("ImageScaleBy", {"upscale_method": "bilinear", "scale_by": 0.5}, (64, 32)),
        ("ImagePadForOutpaint", {"left": 4, "top": 0, "right": 4, "bottom": 8, "feathering": 0}, (136, 72)),
    ],
)
async def test_output_sizes_follow_the_graph(
    fake: FakeComfy, http: httpx.AsyncClient, node: str, inputs: dict, size: tuple[int, int]
) -> None:
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 128, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": node, "inputs": {"image": ["1", 0], **inputs}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "size"}},
    }
    response = await http.post("/prompt", json={"prompt": graph})
    assert response.status_code == 200, response.text
    prompt_id = response.json()["prompt_id"]
    entry = await fake.wait_for_async(lambda: fake.history.get(prompt_id))
    filename = entry["outputs"]["3"]["images"][0]["filename"]
    with Image.open(fake.output_dir / filename) as img:
        assert img.size == size


async def _until(ws: ClientConnection, wanted: Any) -> None:
    """Read text messages until one satisfies ``wanted``."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(raw, str) and wanted(json.loads(raw)):
            return


async def test_history_is_written_after_the_success_message_when_told_to_lag(
    fake: FakeComfy, http: httpx.AsyncClient
) -> None:
    """As a real ComfyUI: execution_success first, history (and the end marker) after it."""
    fake.configure(history_delay=0.3)
    graph = SCENARIOS["success"]["post_prompt"]["request"]
    async with connect(f"{fake.ws_url}?clientId={graph['client_id']}") as ws:
        await fake.wait_for_async(lambda: len(fake.connected_clients()) == 1, what="socket")
        prompt_id = (await http.post("/prompt", json=graph)).json()["prompt_id"]
        await _until(ws, lambda m: m["type"] == "execution_success")
        # On the success: no history yet, and the prompt is still the running one.
        assert (await http.get(f"/history/{prompt_id}")).json() == {}
        running = (await http.get("/queue")).json()["queue_running"]
        assert [item[1] for item in running] == [prompt_id]
        await _until(ws, lambda m: m["type"] == "executing" and m["data"].get("node") is None)
        # By the end marker, it is written.
        assert prompt_id in (await http.get(f"/history/{prompt_id}")).json()
