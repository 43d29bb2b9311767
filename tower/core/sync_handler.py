"""Django's ASGI handler with its middleware chain run synchronously, in one thread hop a request.

Django's own handler runs each ``MiddlewareMixin`` hook in async mode, hopping to the sync thread and
back for each (about sixteen hops a request with Tower's middleware and sync DRF views). Every
middleware here is sync-capable, so the whole chain runs in Django's sync thread; an async view (the
health check) still runs, through ``async_to_sync``. 1.5–3 ms less CPU a request (bench/README.md).
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
