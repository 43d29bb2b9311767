"""ASGI entry point: HTTP through Django (overload shed with a fast 503), WebSockets through Channels
(authenticated)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tower.settings")

import django

django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application does first

from tower.core.sync_handler import SyncChainASGIHandler  # noqa: E402

django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from tower.core.shedding import LoadShedding  # noqa: E402
from tower.routing import websocket_urlpatterns  # noqa: E402
from tower.ws_auth import TowerAuthMiddlewareStack  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": LoadShedding(django_asgi_app, max_in_flight=settings.WEB_MAX_IN_FLIGHT, exempt=["/api/health"]),
        # The Origin check (cookie sockets only) is part of the stack: token sockets need none.
        "websocket": TowerAuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
    }
)
