"""WebSocket authentication: the session cookie (pages) or an API token (API clients).

API clients send ``Authorization: Bearer twr_…`` in the handshake, or, where a client cannot set
headers (browsers' WebSocket API), the ``Sec-WebSocket-Protocol`` header ``bearer.twr_…``.
"""

from __future__ import annotations

from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from tower.models import ApiToken, hash_token


@database_sync_to_async
def _user_for_token(raw: str) -> Any:
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def _token_from_scope(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            parts = value.decode(errors="replace").split()
            if len(parts) == 2 and parts[0].lower() in {"bearer", "token"}:
                return parts[1]
    for proto in scope.get("subprotocols") or []:
        if proto.startswith("bearer."):
            return proto.removeprefix("bearer.")
    return None


class TokenAuthMiddleware:
    """Runs after the session middleware; a valid token wins, an invalid one means anonymous."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        raw = _token_from_scope(scope)
        if raw is not None:
            user = await _user_for_token(raw)
            scope = {**scope, "user": user or AnonymousUser()}
        return await self.inner(scope, receive, send)


def TowerAuthMiddlewareStack(inner: Any) -> Any:
    return AuthMiddlewareStack(TokenAuthMiddleware(inner))
