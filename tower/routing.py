"""WebSocket routes; each app's consumers are added here."""

from __future__ import annotations

websocket_urlpatterns: list = []
