"""Content-Security-Policy for every answer: scripts only from Tower's own static files.

The studio's pages load htmx, its WebSocket extension and Tower's scripts from ``/static/``; no
page has an inline script or an ``on…=`` handler attribute, and htmx runs with
``includeIndicatorStyles: false`` and without ``hx-on`` / ``js:`` (which would need eval). A
template that truly needs an inline script marks it with the request's nonce:

    <script nonce="{{ csp_nonce }}">…</script>

(``csp_nonce`` comes from the context processor below). Inline ``style=""`` attributes are
allowed: htmx swaps fragments that carry them, and a style cannot run code. Answers that set
their own policy (media files: ``sandbox``) keep it.
"""

from __future__ import annotations

import secrets

from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin
from django.utils.functional import SimpleLazyObject

HEADER = "Content-Security-Policy"


def policy(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "media-src 'self' blob:",
            "font-src 'self' data:",
            # 'self' covers the page's own ws:// and wss:// (CSP 3).
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """Sets the policy on every answer that has none (MiddlewareMixin: sync and async alike)."""

    def process_request(self, request: HttpRequest) -> None:
        request.csp_nonce = secrets.token_urlsafe(16)  # type: ignore[attr-defined]  # read by the templates

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if HEADER not in response:
            response[HEADER] = policy(getattr(request, "csp_nonce", "") or secrets.token_urlsafe(16))
        return response


def csp_nonce(request: HttpRequest) -> dict[str, object]:
    """Template context: ``csp_nonce`` for the rare inline ``<script nonce="…">``."""
    return {"csp_nonce": SimpleLazyObject(lambda: getattr(request, "csp_nonce", ""))}
