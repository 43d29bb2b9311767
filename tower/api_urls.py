"""REST API v1, its OpenAPI schema and docs. (Filled in by the API work.)"""

from __future__ import annotations

urlpatterns: list = []
