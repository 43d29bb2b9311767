"""WebSocket routes."""

from __future__ import annotations

from django.urls import path

from generation.consumers import EventsConsumer
from tower.page_consumer import PageConsumer

websocket_urlpatterns = [
    path("ws/v1/events/", EventsConsumer.as_asgi()),
    path("ws/pages/", PageConsumer.as_asgi()),
]
