"""HTTP plumbing for the ComfyUI client: one httpx client, errors mapped to ComfyError types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from generation.comfyui.errors import ComfyProtocolError, ComfyUnreachable


def redact(url: str) -> str:
    """The URL without user:password, for messages that get stored and shown."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _clean(exc: Exception, secret_url: str, public_url: str) -> str:
    return str(exc).replace(secret_url, public_url)


class Http:
    def __init__(self, base_url: str, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.public_url = redact(self.base_url)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ComfyUnreachable(f"ComfyUI at {self.public_url} did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise ComfyUnreachable(
                f"ComfyUI at {self.public_url} is unreachable: {_clean(exc, self.base_url, self.public_url)}"
            ) from exc

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        response = await self.request("GET", path, **kwargs)
        if response.status_code != 200:
            raise ComfyProtocolError(f"GET {path} answered HTTP {response.status_code}")
        return decode_json(response, f"GET {path}")

    async def post_ok(self, path: str, payload: Any) -> None:
        """POST a JSON body to an endpoint that answers 200 with an empty body."""
        response = await self.request("POST", path, json=payload)
        if response.status_code != 200:
            raise ComfyProtocolError(f"POST {path} answered HTTP {response.status_code}")

    @asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        try:
            async with self._client.stream(method, path, **kwargs) as response:
                yield response
        except httpx.TimeoutException as exc:
            raise ComfyUnreachable(f"ComfyUI at {self.public_url} did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise ComfyUnreachable(
                f"ComfyUI at {self.public_url} is unreachable: {_clean(exc, self.base_url, self.public_url)}"
            ) from exc


def decode_json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ComfyProtocolError(f"{what} did not answer JSON (HTTP {response.status_code})") from exc
