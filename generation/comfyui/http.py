"""HTTP plumbing for the ComfyUI client: one httpx client, errors mapped to ComfyError types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from generation.comfyui.errors import ComfyProtocolError, ComfyUnreachable


class Http:
    def __init__(self, base_url: str, timeout: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
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
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} is unreachable: {exc}") from exc

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
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise ComfyUnreachable(f"ComfyUI at {self.base_url} is unreachable: {exc}") from exc


def decode_json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ComfyProtocolError(f"{what} did not answer JSON (HTTP {response.status_code})") from exc
