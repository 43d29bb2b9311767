"""WebSocket routes."""

from __future__ import annotations

from django.urls import path

from generation.consumers import EventsConsumer

websocket_urlpatterns = [
    path("ws/v1/events/", EventsConsumer.as_asgi()),
]
