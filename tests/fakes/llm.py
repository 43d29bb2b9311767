"""A fake OpenAI-compatible vision LLM on a real port (what Ollama's /v1, vLLM and llama.cpp serve).

    with FakeLLM(colours={"Aiko": (220, 30, 30), "Ben": (30, 30, 220)}) as llm:
        settings.TOWER_LLM_BASE_URL = llm.url          # http://127.0.0.1:<port>/v1
        ...                                            # classification answers by dominant colour
        llm.requests[-1].images[0]                     # what the client sent, decoded

``POST /v1/chat/completions`` checks the request shape the way the real servers do (model known,
messages with roles and text or content parts, ``image_url`` parts as base64 ``data:`` URLs of a
readable image) and answers 400 / 404 / 401 with an OpenAI-style ``{"error": {...}}`` body when it
is wrong. A valid request is answered with the real response shape (``id``, ``object``
``"chat.completion"``, ``choices[0].message.content``, ``usage``).

Scripting per test: ``answer`` (a string, or a function of the :class:`FakeRequest`), ``mode``:
``"ok"``, ``"slow"`` (holds the answer until the server closes: the client's timeout fires),
``"error500"``, ``"garbage"`` (prose instead of JSON), ``"broken"`` (200 but not a completion).
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

Colour = tuple[int, int, int]
SLOW_BOUND = 30.0  # seconds a slow answer is held at most (released at close)


@dataclass
class FakeRequest:
    body: dict[str, Any]
    headers: dict[str, str]
    texts: list[str] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    image_urls: list[str] = field(default_factory=list)

    @property
    def prompt(self) -> str:
        return "\n".join(self.texts)


class BadRequest(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.param = status, code, param


def dominant_colour(image: Image.Image) -> Colour:
    """The most frequent colour of the image (tests draw solid or mostly solid images)."""
    small = image.convert("RGB").resize((64, 64), Image.Resampling.NEAREST)
    counts = small.getcolors(64 * 64) or [(1, (0, 0, 0))]
    return max(counts, key=lambda c: c[0])[1]


def nearest(colours: dict[str, Colour], colour: Colour) -> str:
    return min(colours, key=lambda name: sum((a - b) ** 2 for a, b in zip(colours[name], colour, strict=True)))


class FakeLLM:
    def __init__(
        self,
        *,
        model: str = "llava",
        api_key: str = "",
        answer: str | Callable[[FakeRequest], str] | None = None,
        colours: dict[str, Colour] | None = None,
        confidence: float = 0.9,
        fence: bool = True,
    ) -> None:
        self.model = model
        self.api_key = api_key
        self.colours = colours or {}
        self.confidence = confidence
        self.fence = fence
        self.answer = answer if answer is not None else self.classify_by_colour
        self.mode = "ok"
        self.requests: list[FakeRequest] = []
        self.rejected: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting helpers

    def classify_by_colour(self, request: FakeRequest) -> str:
        """``{"character": <name of the nearest colour>, "confidence": …}``; ``null`` with no colours."""
        name = nearest(self.colours, dominant_colour(request.images[0])) if self.colours and request.images else None
        text = json.dumps({"character": name, "confidence": self.confidence})
        return f"Here is my answer:\n```json\n{text}\n```" if self.fence else text

    # --- lifecycle

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeLLM:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})
                else:
                    self._json(404, _error(f"no route {self.path}", "invalid_request_error"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, _error(f"no route {self.path}", "invalid_request_error"))
                    return
                try:
                    request = fake._check(raw, {k.lower(): v for k, v in self.headers.items()})
                except BadRequest as exc:
                    with fake._lock:
                        fake.rejected.append((exc.status, str(exc)))
                    self._json(exc.status, _error(str(exc), "invalid_request_error", exc.code, exc.param))
                    return
                with fake._lock:
                    fake.requests.append(request)
                    mode = fake.mode
                if mode == "slow":
                    fake._release.wait(SLOW_BOUND)
                    return  # the client has given up; close without answering
                if mode == "error500":
                    self._json(500, _error("model runner crashed", "server_error"))
                    return
                if mode == "broken":
                    self._json(200, {"object": "chat.completion", "choices": []})
                    return
                content = "What a lovely picture! I am not sure." if mode == "garbage" else fake._answer(request)
                self._json(200, fake._completion(content, request))

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-llm", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- protocol

    def _answer(self, request: FakeRequest) -> str:
        return self.answer(request) if callable(self.answer) else str(self.answer)

    def _check(self, raw: bytes, headers: dict[str, str]) -> FakeRequest:
        if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
            raise BadRequest(401, "Incorrect API key provided", "invalid_api_key")
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadRequest(400, "We could not parse the JSON body of your request.") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "The request body must be a JSON object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequest(400, "you must provide a model parameter", param="model")
        if model != self.model:
            raise BadRequest(404, f"The model `{model}` does not exist.", "model_not_found", "model")
        temperature = body.get("temperature", 1)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise BadRequest(400, "temperature must be a number between 0 and 2", param="temperature")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(400, "messages must be a non-empty array", param="messages")
        request = FakeRequest(body=body, headers=headers)
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                raise BadRequest(400, f"messages[{i}] needs a role of system, user or assistant", param="messages")
            content = message.get("content")
            if isinstance(content, str):
                request.texts.append(content)
                continue
            if not isinstance(content, list) or not content:
                raise BadRequest(400, f"messages[{i}].content must be a string or an array of parts")
            for part in content:
                self._check_part(part, i, request)
        return request

    def _check_part(self, part: Any, i: int, request: FakeRequest) -> None:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            request.texts.append(part["text"])
            return
        if kind != "image_url":
            raise BadRequest(400, f"messages[{i}]: unknown content part {kind!r}", param="messages")
        url = part.get("image_url", {}).get("url") if isinstance(part.get("image_url"), dict) else None
        if not isinstance(url, str) or not url.startswith("data:image/") or ";base64," not in url:
            raise BadRequest(400, f"messages[{i}]: image_url must be a base64 data URL of an image", param="messages")
        try:
            data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
            image = Image.open(io.BytesIO(data))
            image.load()
        except (ValueError, OSError):
            raise BadRequest(400, f"messages[{i}]: the image could not be decoded", param="messages") from None
        request.image_urls.append(url)
        request.images.append(image)

    def _completion(self, content: str, request: FakeRequest) -> dict[str, Any]:
        prompt_tokens = sum(len(t.split()) for t in request.texts) + 576 * len(request.images)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(content.split()),
                "total_tokens": prompt_tokens + len(content.split()),
            },
        }


def _error(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@pytest.fixture
def fake_llm(settings) -> Iterator[FakeLLM]:
    """A running fake LLM that the installation's settings point at (import it into a test module)."""
    with FakeLLM() as llm:
        settings.TOWER_LLM_BASE_URL = llm.url
        settings.TOWER_LLM_MODEL = llm.model
        settings.TOWER_LLM_API_KEY = ""
        settings.TOWER_LLM_TIMEOUT = 10.0
        yield llm
