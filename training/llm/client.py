"""The one client for the LLM assistant: an OpenAI-compatible chat completions API.

Ollama (``http://host:11434/v1``), vLLM, llama.cpp's server and the user's Echo Brain all speak
``POST {base}/chat/completions``; images travel as ``data:`` URLs in ``image_url`` content parts.
Synchronous (callers are django-q2 tasks), httpx with timeouts, typed results, validated answers.

    client = LLMClient.from_settings()        # None when TOWER_LLM_BASE_URL is empty
    answer = client.ask_image("Which character is this?", png_bytes)
    data = parse_json_answer(answer.content)  # tolerates ```json fences and prose around the object

Errors: :class:`LLMUnavailable` (connection refused, timeout, 5xx: try later or fall back) and
:class:`LLMError` (4xx, an answer that is not a chat completion: the request or the model is wrong).
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from PIL import Image, UnidentifiedImageError

# Vision models see a few hundred pixels; sending a 4K PNG only costs bandwidth and base64 memory.
MAX_IMAGE_SIDE = 1024
_SNIFF = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))


class LLMError(Exception):
    """The LLM refused the request (4xx) or answered something that is not a usable chat completion."""


class LLMUnavailable(LLMError):
    """The LLM could not be reached, timed out or failed on its side (5xx): nothing wrong with the request."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ChatAnswer:
    content: str
    model: str
    finish_reason: str
    usage: Usage


def image_mime(data: bytes) -> str:
    for magic, mime in _SNIFF:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    raise LLMError("the image is not PNG, JPEG, WebP or GIF")


def image_data_url(data: bytes, *, max_side: int = MAX_IMAGE_SIDE) -> str:
    """``data:<mime>;base64,…`` of the image, downscaled (as PNG) when a side exceeds ``max_side``."""
    mime = image_mime(data)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if max(image.size) > max_side:
                image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format="PNG")
                data, mime = buffer.getvalue(), "image/png"
    except (UnidentifiedImageError, OSError) as exc:
        raise LLMError(f"the image cannot be read: {exc}") from None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_message(prompt: str, data: bytes) -> dict[str, Any]:
    """A user message carrying text and one image, the OpenAI vision shape."""
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": prompt},
            {"type": "image_url", "image_url": {"url": image_data_url(data)}},
        ],
    }


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def parse_json_answer(text: str) -> Any:
    """The JSON value in a model's answer: plain, in a ```json fence, or the first {…} in prose.

    Raises :class:`LLMError` when there is none.
    """
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    snippet = text.strip().replace("\n", " ")[:120]
    raise LLMError(f"the LLM did not answer with JSON: {snippet!r}")


class LLMClient:
    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str = "",
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise LLMError("no LLM base URL configured (TOWER_LLM_BASE_URL)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # A connection that is refused should fail fast; generating an answer may legitimately take long.
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self._http = httpx.Client(headers=headers, timeout=self._timeout, transport=transport)

    @classmethod
    def from_settings(cls) -> LLMClient | None:
        """The configured client, or None when no LLM is configured (``TOWER_LLM_BASE_URL`` empty)."""
        if not settings.TOWER_LLM_BASE_URL:
            return None
        return cls(
            settings.TOWER_LLM_BASE_URL,
            model=settings.TOWER_LLM_MODEL,
            api_key=settings.TOWER_LLM_API_KEY,
            timeout=settings.TOWER_LLM_TIMEOUT,
        )

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def chat(self, messages: list[dict[str, Any]], *, temperature: float = 0.0, max_tokens: int = 300) -> ChatAnswer:
        payload = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": False,
        }
        url = f"{self.base_url}/chat/completions"
        try:
            response = self._http.post(url, json=payload)
        except httpx.TimeoutException:
            raise LLMUnavailable(f"the LLM at {self.base_url} did not answer within {self._timeout.read:g} s") from None
        except httpx.HTTPError as exc:
            raise LLMUnavailable(f"the LLM at {self.base_url} cannot be reached: {exc}") from None
        if response.status_code >= 500:
            raise LLMUnavailable(f"the LLM failed (HTTP {response.status_code}): {_error_text(response)}")
        if response.status_code >= 400:
            raise LLMError(f"the LLM refused the request (HTTP {response.status_code}): {_error_text(response)}")
        try:
            body = response.json()
        except ValueError:
            raise LLMError("the LLM's answer is not JSON") from None
        return _parse_completion(body)

    def ask_image(self, prompt: str, data: bytes, *, system: str = "", max_tokens: int = 300) -> ChatAnswer:
        messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        messages.append(image_message(prompt, data))
        return self.chat(messages, max_tokens=max_tokens)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    return json.dumps(body)[:200]


def _parse_completion(body: Any) -> ChatAnswer:
    if not isinstance(body, dict):
        raise LLMError("the LLM's answer is not a chat completion object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMError("the LLM's answer has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise LLMError("the LLM's answer has no message")
    content = message.get("content")
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise LLMError("the LLM's message has no text content")
    usage = body.get("usage")
    if not isinstance(usage, dict):
        usage = {}
    return ChatAnswer(
        content=content,
        model=str(body.get("model", "")),
        finish_reason=str(choices[0].get("finish_reason") or ""),
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        ),
    )
