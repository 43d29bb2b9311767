"""HTTP and WebSocket routes of the fake ComfyUI, each also served under /api like the real one."""

from __future__ import annotations

import hashlib
import io
import json
import mimetypes
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web
from PIL import Image

from tests.fakes.comfyui_recordings import body

if TYPE_CHECKING:
    from tests.fakes.comfyui_server import FakeServer

FEATURES = {"supports_preview_metadata": True, "max_upload_size": 104857600}
MODEL_FOLDERS = body("models.json", "/models")
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("video/webm", ".webm")


def build_app(srv: FakeServer) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        route = request.match_info.route.resource
        srv.counters.requests[f"{request.method} {route.canonical if route else request.path}"] += 1
        return await handler(request)

    app = web.Application(client_max_size=FEATURES["max_upload_size"], middlewares=[count])

    @routes.get("/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "") or uuid.uuid4().hex
        hub = srv.hub
        hub.sockets.pop(sid, None)
        hub.sockets[sid] = ws
        hub.flags[sid] = {}
        srv.counters.websockets_opened += 1
        srv.notify()
        try:
            await hub.send_json("status", {"status": srv.state.queue_info(), "sid": sid}, sid)
            if srv.state.executing_client == sid and srv.state.last_node_id is not None:
                await hub.send_json("executing", {"node": srv.state.last_node_id}, sid)
            first = True
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except json.JSONDecodeError:
                    continue
                if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                    hub.flags[sid] = data.get("data", {}) or {}
                    await hub.send_json("feature_flags", FEATURES, sid)
                first = False
        finally:
            # Like ComfyUI, this forgets the client id even if a newer socket took it over.
            hub.sockets.pop(sid, None)
            hub.flags.pop(sid, None)
            srv.notify()
        return ws

    @routes.get("/embeddings")
    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response([])

    @routes.get("/models")
    async def models(request: web.Request) -> web.Response:
        return web.json_response(MODEL_FOLDERS)

    @routes.get("/models/{folder}")
    async def models_in(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in MODEL_FOLDERS:
            return web.Response(status=404)
        lists = {"checkpoints": srv.config.checkpoints, "loras": srv.config.loras, "vae": srv.config.vaes}
        return web.json_response(list(lists.get(folder, [])))

    @routes.get("/experiment/models")
    async def experiment_models(request: web.Request) -> web.Response:
        return web.json_response(body("models.json", "/experiment/models"))

    @routes.get("/extensions")
    async def extensions(request: web.Request) -> web.Response:
        return web.json_response(body("extensions.json"))

    @routes.get("/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        stats = body("system_stats.json")
        for device in stats["devices"]:
            if srv.config.vram_total is not None:
                device["vram_total"] = device["torch_vram_total"] = srv.config.vram_total
            if srv.config.vram_free is not None:
                device["vram_free"] = device["torch_vram_free"] = srv.config.vram_free
        return web.json_response(stats)

    @routes.get("/features")
    async def features(request: web.Request) -> web.Response:
        return web.json_response(FEATURES)

    @routes.get("/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return web.json_response(srv.state.queue_info())

    @routes.get("/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return web.json_response(srv.object_info())

    @routes.get("/object_info/{node_class}")
    async def object_info_node(request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        info = srv.object_info()
        return web.json_response({name: info[name]} if name in info else {})

    @routes.get("/history")
    async def history(request: web.Request) -> web.Response:
        query = request.rel_url.query
        max_items = int(query["max_items"]) if "max_items" in query else None
        offset = int(query["offset"]) if "offset" in query else -1
        return web.json_response(srv.state.get_history(max_items, offset))

    @routes.get("/history/{prompt_id}")
    async def history_one(request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = srv.state.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    @routes.get("/queue")
    async def queue(request: web.Request) -> web.Response:
        running = [list(item) for item in srv.state.running.values()]
        pending = [list(item) for item in srv.state.pending_items()]
        return web.json_response({"queue_running": running, "queue_pending": pending})

    @routes.post("/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        srv.counters.prompts_received += 1
        data = await request.json()
        if "number" in data:
            number: Any = float(data["number"])
        else:
            number = srv.state.number
            if data.get("front"):
                number = -number
            srv.state.number += 1
        if "prompt" not in data:
            srv.counters.prompts_rejected += 1
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = data["prompt"]
        honored = srv.config.honor_prompt_id and "prompt_id" in data
        prompt_id = str(data["prompt_id"]) if honored else str(uuid.uuid4())
        valid = srv.validator().validate(prompt, data.get("partial_execution_targets"))
        extra_data = data.get("extra_data", {})
        if "client_id" in data:
            extra_data["client_id"] = data["client_id"]
        if not valid.ok:
            srv.counters.prompts_rejected += 1
            return web.json_response({"error": valid.error, "node_errors": valid.node_errors}, status=400)
        await srv.enqueue((number, prompt_id, prompt, extra_data, valid.outputs))
        return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": valid.node_errors})

    @routes.post("/queue")
    async def post_queue(request: web.Request) -> web.Response:
        data = await request.json()
        changed = False
        if data.get("clear"):
            srv.state.queue.clear()
            changed = True
        for prompt_id in data.get("delete", []):
            changed = srv.state.delete_pending(prompt_id) or changed
        if changed:
            await srv.executor.broadcast_status()
        return web.Response(status=200)

    @routes.post("/interrupt")
    async def interrupt(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except json.JSONDecodeError:
            data = {}
        target = data.get("prompt_id") if isinstance(data, dict) else None
        if not target or any(item[1] == target for item in srv.state.running.values()):
            srv.state.interrupted = True
        return web.Response(status=200)

    @routes.post("/free")
    async def free(request: web.Request) -> web.Response:
        data = await request.json()
        for flag in ("unload_models", "free_memory"):
            if data.get(flag, False):
                srv.state.flags[flag] = data[flag]
        async with srv.state.cond:
            srv.state.cond.notify_all()
        return web.Response(status=200)

    @routes.post("/history")
    async def post_history(request: web.Request) -> web.Response:
        data = await request.json()
        if data.get("clear"):
            srv.state.history.clear()
        for prompt_id in data.get("delete", []):
            srv.state.history.pop(prompt_id, None)
        return web.Response(status=200)

    @routes.post("/upload/image")
    async def upload_image(request: web.Request) -> web.Response:
        post = await request.post()
        image = post.get("image")
        folder = str(post.get("type") or "input")
        base = srv.dirs.get(folder)
        if not isinstance(image, web.FileField) or not image.filename or base is None:
            return web.Response(status=400)
        subfolder = str(post.get("subfolder", ""))
        target_dir = Path(os.path.normpath(base / subfolder)) if subfolder else base
        filepath = Path(os.path.abspath(target_dir / image.filename))
        if os.path.commonpath((str(base), str(filepath))) != str(base):
            return web.Response(status=400)
        data = image.file.read()
        target_dir.mkdir(parents=True, exist_ok=True)
        filename = image.filename
        if str(post.get("overwrite", "")) not in ("true", "1"):
            stem, ext = os.path.splitext(filename)
            counter = 1
            while filepath.exists():
                if hashlib.sha256(filepath.read_bytes()).digest() == hashlib.sha256(data).digest():
                    return web.json_response({"name": filename, "subfolder": subfolder, "type": folder})
                filename = f"{stem} ({counter}){ext}"
                filepath = target_dir / filename
                counter += 1
        filepath.write_bytes(data)
        srv.notify()
        return web.json_response({"name": filename, "subfolder": subfolder, "type": folder})

    @routes.get("/view")
    async def view(request: web.Request) -> web.StreamResponse:
        query = request.rel_url.query
        if "filename" not in query:
            return web.Response(status=404)
        filename, folder = _annotated(query["filename"])
        if not filename or filename[0] == "/" or ".." in filename:
            return web.Response(status=400)
        output_dir = srv.dirs.get(folder or query.get("type", "output"))
        if output_dir is None:
            return web.Response(status=400)
        if "subfolder" in query:
            full = os.path.join(output_dir, query["subfolder"])
            if os.path.commonpath((os.path.abspath(full), str(output_dir))) != str(output_dir):
                return web.Response(status=403)
            output_dir = Path(full)
        filename = os.path.basename(filename)
        path = Path(output_dir) / filename
        if not path.is_file():
            return web.Response(status=404)
        disposition = {"Content-Disposition": f'filename="{filename}"'}
        if "preview" in query or query.get("channel") in ("rgb", "a"):
            body_bytes, content_type = _transcode(path, query)
            return web.Response(body=body_bytes, content_type=content_type, headers=disposition)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return web.FileResponse(path, headers={**disposition, "Content-Type": content_type})

    for route in list(routes):
        if isinstance(route, web.RouteDef):
            app.router.add_route(route.method, "/api" + route.path, route.handler)
    app.add_routes(routes)
    return app


def _annotated(name: str) -> tuple[str, str | None]:
    for folder in ("output", "input", "temp"):
        suffix = f" [{folder}]"
        if name.endswith(suffix):
            return name[: -len(suffix)], folder
    return name, None


def _transcode(path: Path, query: Any) -> tuple[bytes, str]:
    buf = io.BytesIO()
    with Image.open(path) as img:
        if "preview" in query:
            parts = query["preview"].split(";")
            fmt = parts[0] if parts[0] in ("webp", "jpeg") and "a" not in query.get("channel", "") else "webp"
            quality = int(parts[-1]) if parts[-1].isdigit() else 90
            out = img.convert("RGB") if fmt == "jpeg" or query.get("channel", "") == "rgb" else img
            out.save(buf, format=fmt, quality=quality)
            return buf.getvalue(), f"image/{fmt}"
        if query["channel"] == "rgb":
            img.convert("RGB").save(buf, format="PNG")
        else:
            alpha = img.getchannel("A") if img.mode == "RGBA" else Image.new("L", img.size, 255)
            out = Image.new("RGBA", img.size)
            out.putalpha(alpha)
            out.save(buf, format="PNG")
    return buf.getvalue(), "image/png"
