"""WebSocket authentication: the session cookie (pages) or an API token (API clients).

API clients send ``Authorization: Bearer twr_…`` in the handshake, or, where a client cannot set
headers (browsers' WebSocket API), the ``Sec-WebSocket-Protocol`` header ``bearer.twr_…``.

The Origin check protects cookie sessions from cross-site use (a foreign page's socket carries the
victim's cookie). A socket that presents a token is authenticated by that token alone, never by
the cookie, so it needs no Origin: most non-browser clients send none.

Credentials are checked at connect time and again by :func:`credentials_hold`, which the stack puts
in the scope (``tower.core.sockets``) for consumers to call before forwarding each event: a revoked
token, a signed-out session or a deactivated user stops the socket at its next event.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import AllowedHostsOriginValidator
from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import AnonymousUser
from django.utils.crypto import constant_time_compare

from tower.core.sockets import CREDENTIALS_CHECK
from tower.models import ApiToken, hash_token

# Scope key holding the id of the token that authenticated the socket.
TOKEN_ID_KEY = "tower_api_token_id"  # noqa: S105 - a dict key, not a secret


@database_sync_to_async
def _token_for(raw: str) -> ApiToken | None:
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(raw)).first()
    if token is None or not token.user.is_active:
        return None
    return token


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
    """Runs after the session middleware; a valid token wins, an invalid one means anonymous.

    Either way it hands consumers the recheck of those credentials (:func:`credentials_hold`).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        raw = _token_from_scope(scope)
        scope = {**scope, CREDENTIALS_CHECK: credentials_hold}
        if raw is not None:
            token = await _token_for(raw)
            scope.update({"user": token.user if token else AnonymousUser(), TOKEN_ID_KEY: token and token.pk})
        return await self.inner(scope, receive, send)


class TokenOrOriginValidator:
    """Sockets that present a token pass; the others (cookie sessions) must come from an allowed host."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.origin_checked = AllowedHostsOriginValidator(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if _token_from_scope(scope) is not None:
            return await self.inner(scope, receive, send)
        return await self.origin_checked(scope, receive, send)


def TowerAuthMiddlewareStack(inner: Any) -> Any:
    return TokenOrOriginValidator(AuthMiddlewareStack(TokenAuthMiddleware(inner)))


def credentials_hold(scope: dict[str, Any]) -> bool:
    """Whether what authenticated the socket still does (one or two indexed queries; sync).

    A token socket: the token still exists and its user is active. A session socket: the session
    still exists for the same user (signing out deletes it), the user is active, and the password
    is the one the session was signed in with.
    """
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return False
    if TOKEN_ID_KEY in scope:
        return ApiToken.objects.filter(pk=scope[TOKEN_ID_KEY], user__is_active=True).exists()
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if not key:
        return False
    # A fresh store: the scope's copy was loaded at connect time and would not see a sign-out.
    stored = import_module(settings.SESSION_ENGINE).SessionStore(session_key=key)
    if stored.get(SESSION_KEY) != str(user.pk):
        return False
    current = get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()
    if current is None:
        return False
    # As Django's get_user(): a password change ends the sessions signed in with the old one.
    session_hash = stored.get(HASH_SESSION_KEY) or ""
    hashes = [current.get_session_auth_hash(), *current.get_session_auth_fallback_hash()]
    return any(constant_time_compare(session_hash, h) for h in hashes)
